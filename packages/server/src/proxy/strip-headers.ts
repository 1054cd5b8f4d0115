/**
 * Builds the header set forwarded upstream from what the agent sent.
 *
 * MUST NOT forward: hop-by-hop headers (RFC 9110 §7.6.1, plus every name listed in
 * `Connection`), the lease, signature and any `Nexus-*` header, agent-supplied
 * credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) or any header the
 * service's mechanic injects, and method-override headers (policy decided on the real
 * method; an upstream honouring an override would act on another one).
 */
const ALWAYS_DROPPED: ReadonlySet<string> = new Set([
  // hop-by-hop
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'expect',
  // recomputed for the buffered body / set by the client library
  'content-length',
  'host',
  // Nexus protocol headers
  'workload-identity-token',
  'signature',
  'signature-input',
  // agent-supplied credentials
  'authorization',
  'proxy-authorization',
  'cookie',
  // method overrides
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  // Partial content: a 206 slice shorter than a secret passes the scrubber, and slices
  // fetched one by one reassemble a reflected credential. MUST NOT forward; the upstream
  // then sends the whole representation (a server may ignore Range, RFC 9110 §14.2).
  'range',
  'if-range',
  // forwarding metadata the agent could forge
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  // rewrite and routing headers some servers and frameworks honour (IIS, Symfony...)
  'x-original-url',
  'x-rewrite-url',
  'x-forwarded-prefix',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-original-host',
  'x-host',
]);

/**
 * Returns the forwardable request headers (lower-case names, single values).
 *
 * @param headers node's `req.headersDistinct`-style map
 * @param injected lower-case header names the mechanic will set
 */
export function forwardableRequestHeaders(
  headers: Readonly<Record<string, readonly string[] | undefined>>,
  injected: readonly string[],
): Record<string, string> {
  const dropped = new Set(injected.map((h) => h.toLowerCase()));
  for (const token of (headers['connection'] ?? []).join(',').split(',')) {
    const name = token.trim().toLowerCase();
    if (name) dropped.add(name);
  }
  const out: Record<string, string> = {};
  for (const [rawName, values] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (values === undefined || ALWAYS_DROPPED.has(name) || dropped.has(name)) continue;
    if (name.startsWith('nexus-')) continue;
    out[name] = values.join(', ');
  }
  const accept = out['accept-encoding'];
  if (accept !== undefined) {
    const limited = limitAcceptEncoding(accept);
    if (limited === '') delete out['accept-encoding'];
    else out['accept-encoding'] = limited;
  }
  return out;
}

/** Content codings the response scrubber can decode (scrub/body.ts). */
const DECODABLE = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity']);

/**
 * Keeps only codings the scrubber can decode. An agent asking for `zstd` (or `*`) would
 * otherwise get an upstream response Nexus must refuse, and could tie up connections.
 */
export function limitAcceptEncoding(value: string): string {
  return value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => DECODABLE.has((t.split(';')[0] ?? '').trim().toLowerCase()))
    .join(', ');
}
