/**
 * Builds the header set forwarded upstream from what the agent sent.
 *
 * MUST NOT forward: hop-by-hop headers (RFC 9110 §7.6.1, plus every name listed in
 * `Connection`), the lease, signature and any `Nexus-*` header, agent-supplied
 * credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) or any header the
 * service's mechanic injects, method-override headers (policy decided on the real
 * method; an upstream honouring an override would act on another one), partial-content
 * headers, and forwarding, rewrite and client-address metadata that proxies, CDNs and
 * frameworks in front of or inside the upstream trust (whole families by prefix:
 * `X-Forwarded-*`, `X-Original-*`, `X-Envoy-*`, ...). These headers are not signed, so
 * dropping them changes nothing the agent proved; the signed parts (method, target,
 * body) are never altered: an override there is refused (`proxy/param-names.ts`).
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
  // method overrides (X-Original-Method and X-Forwarded-Method: by prefix below)
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-override-method',
  // Partial content: a 206 slice shorter than a secret passes the scrubber, and slices
  // fetched one by one reassemble a reflected credential. MUST NOT forward; the upstream
  // then sends the whole representation (a server may ignore Range, RFC 9110 §14.2).
  // `x-ms-range` is Azure Storage's Range; `request-range` an old alias some servers honour.
  'range',
  'if-range',
  'x-ms-range',
  'request-range',
  // forwarding metadata the agent could forge (X-Forwarded-*: by prefix below)
  'forwarded',
  'via',
  'x-forwarded',
  'forwarded-for',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-cluster-client-ip',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
  'x-proxyuser-ip',
  'client-ip',
  'proxy-client-ip',
  'wl-proxy-client-ip',
  'front-end-https',
  'x-url-scheme',
  'x-scheme',
  // rewrite and routing headers some servers and frameworks honour (IIS, Symfony...)
  'x-rewrite-url',
  'x-host',
  'x-http-host-override',
  // framework-internal headers a request from outside must never carry (Next.js: a forged
  // x-middleware-subrequest skips its middleware, CVE-2025-29927; issue 10 review)
  'x-invoke-path',
  'x-invoke-query',
  'x-invoke-output',
  'x-invoke-status',
  'x-matched-path',
]);

/**
 * Header families dropped by prefix: whoever sets one of these names is trusted by some
 * proxy, CDN or framework to say where the request came from, what it originally was, or
 * how to route or retry it.
 */
const DROPPED_PREFIXES: readonly string[] = [
  'x-forwarded-', // -for, -host, -proto, -port, -prefix, -server, -uri, -path, -scheme, -method, -ssl...
  'x-original-', // -url, -uri, -host, -method (IIS, nginx auth_request, Symfony)
  'x-envoy-', // -original-path, -retry-on, -upstream-rq-timeout-ms, -internal...
  'l5d-', // Linkerd: l5d-dst-override routes the request elsewhere
  'x-rewrite-',
  'cf-', // Cloudflare: cf-connecting-ip, cf-visitor, cf-ipcountry...
  'fastly-', // fastly-client-ip, fastly-ssl...
  'akamai-',
  'x-akamai-',
  'x-azure-', // x-azure-clientip, x-azure-socketip
  'x-arr-', // IIS ARR: x-arr-ssl, x-arr-log-id
  'x-appengine-',
  'x-middleware-', // Next.js: x-middleware-subrequest, -prefetch, -invoke, -rewrite...
  'x-nextjs-',
];

/**
 * The name as CGI-style servers read it: `X_Forwarded_For` and `X-Forwarded-For` are both
 * `HTTP_X_FORWARDED_FOR` to PHP, Rack, WSGI and their frameworks.
 */
function cgiName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/** True for a request header name that is never forwarded, whatever the service. */
export function isAlwaysDropped(name: string): boolean {
  const n = cgiName(name);
  return (
    ALWAYS_DROPPED.has(n) || n.startsWith('nexus-') || DROPPED_PREFIXES.some((p) => n.startsWith(p))
  );
}

/**
 * {@link isAlwaysDropped} of lower-case names already seen, with their CGI reading: the
 * same few names come with every request. Agent-chosen names, so the cache is bounded.
 */
const seenNames = new Map<string, { readonly dropped: boolean; readonly cgi: string }>();
const SEEN_NAMES_MAX = 1024;

function nameInfo(name: string): { readonly dropped: boolean; readonly cgi: string } {
  let info = seenNames.get(name);
  if (info === undefined) {
    if (seenNames.size >= SEEN_NAMES_MAX) seenNames.clear();
    info = { dropped: isAlwaysDropped(name), cgi: cgiName(name) };
    seenNames.set(name, info);
  }
  return info;
}

/**
 * {@link forwardableRequestHeaders} of node's `req.rawHeaders` (name, value, name, value...
 * as received): the same result without building `req.headersDistinct` (an object and an
 * array per header, per request).
 */
export function forwardableRawHeaders(
  raw: readonly string[],
  injected: readonly string[],
): Record<string, string> {
  let dropped: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue;
    dropped ??= new Set(injected.map(cgiName));
    for (const token of (raw[i + 1] as string).split(',')) {
      const name = cgiName(token.trim());
      if (name) dropped.add(name);
    }
  }
  const out: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const info = nameInfo(name);
    if (info.dropped) continue;
    if (
      dropped === undefined
        ? injected.length > 0 && isInjected(info.cgi, injected)
        : dropped.has(info.cgi)
    )
      continue;
    const value = raw[i + 1] as string;
    out[name] = Object.hasOwn(out, name) ? `${out[name]}, ${value}` : value;
  }
  limitAccept(out);
  return out;
}

/** True when `cgi` is the CGI reading of one of the `injected` names. */
function isInjected(cgi: string, injected: readonly string[]): boolean {
  for (const name of injected) if (cgiName(name) === cgi) return true;
  return false;
}

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
  // Compared in their CGI reading too: an agent's `X_Api_Key` next to the injected
  // `X-Api-Key` is the same variable to a PHP or Rack upstream.
  const dropped = new Set(injected.map(cgiName));
  for (const token of (headers['connection'] ?? []).join(',').split(',')) {
    const name = cgiName(token.trim());
    if (name) dropped.add(name);
  }
  const out: Record<string, string> = {};
  for (const [rawName, values] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (values === undefined || isAlwaysDropped(name) || dropped.has(cgiName(name))) continue;
    out[name] = values.join(', ');
  }
  limitAccept(out);
  return out;
}

/** Keeps only the `Accept-Encoding` codings the scrubber decodes (none left: no header). */
function limitAccept(out: Record<string, string>): void {
  const accept = out['accept-encoding'];
  if (accept !== undefined) {
    const limited = limitAcceptEncoding(accept);
    if (limited === '') delete out['accept-encoding'];
    else out['accept-encoding'] = limited;
  }
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
