/**
 * Upstream OAuth discovery for an MCP server (MCP 2025-11-25 "Authorization"): the
 * server's protected resource metadata (RFC 9728), found through its 401's
 * `WWW-Authenticate: Bearer resource_metadata="..."` or at its well-known URIs, then its
 * authorization server's metadata (RFC 8414, else OpenID Connect discovery). The result
 * is what an `oauth2_authorization_code` service needs: endpoints, the RFC 8707 `resource`
 * and the scopes. Client registration (client ID metadata documents, dynamic client
 * registration) is `registration.ts`'s, from what this reports.
 *
 * MUST: every URL fetched is https, or http on a loopback host; no redirect is followed;
 * answers are bounded; the protected resource's `resource` MUST be the MCP endpoint (RFC
 * 9728 §3.3) and the authorization server's `issuer` the URL it was found under (RFC 8414
 * §3.3), or discovery fails: a server cannot send Nexus's users to someone else's server.
 */
import { NexusError } from '@nexus-proxy/protocol';

/** What discovery found. */
export interface McpAuthDiscovery {
  /** The protected resource (the RFC 8707 `resource` to request tokens for). */
  readonly resource: string;
  readonly resourceMetadataUrl: string;
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly registrationEndpoint?: string;
  readonly scopes?: readonly string[];
  /** The authorization server accepts client ID metadata documents as client ids. */
  readonly clientIdMetadataDocuments: boolean;
}

const MAX_BYTES = 256 * 1024;

const fail = (detail: string) => new NexusError('upstream_invalid', undefined, { detail });

/** https, or http to a loopback host. */
export function isAllowedDiscoveryUrl(u: URL): boolean {
  if (u.protocol === 'https:') return true;
  return (
    u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname.toLowerCase())
  );
}

async function getJson(
  url: URL,
  fetchImpl: typeof fetch,
): Promise<Record<string, unknown> | undefined> {
  if (!isAllowedDiscoveryUrl(url)) throw fail('a discovery URL is neither https nor loopback http');
  const res = await fetchImpl(url, {
    headers: { accept: 'application/json' },
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== 200) {
    await res.body?.cancel();
    return undefined;
  }
  const text = await res.text();
  if (text.length > MAX_BYTES) throw fail('a discovery document is too large');
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 9728 §3.1 / RFC 8414 §3.1: the well-known suffix goes between host and path. */
function wellKnown(base: URL, suffix: string): URL {
  const path = base.pathname === '/' ? '' : base.pathname.replace(/\/$/, '');
  return new URL(`${base.origin}/.well-known/${suffix}${path}`);
}

/** The `resource_metadata` parameter of a `WWW-Authenticate: Bearer ...` challenge. */
export function resourceMetadataParam(header: string | null): string | undefined {
  if (header === null) return undefined;
  const m = /(?:^|[\s,])resource_metadata\s*=\s*"([^"]*)"/i.exec(header);
  return m?.[1];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * Discovers how to obtain tokens for the MCP server at `endpoint`.
 *
 * @throws NexusError `upstream_invalid` (no metadata, a mismatched `resource` or `issuer`,
 *   no PKCE S256) or `upstream_unreachable`.
 */
export async function discoverMcpAuthorization(
  endpoint: string,
  fetchImpl: typeof fetch = fetch,
): Promise<McpAuthDiscovery> {
  const mcp = new URL(endpoint);
  if (!isAllowedDiscoveryUrl(mcp))
    throw fail('the MCP endpoint is neither https nor loopback http');
  let challenge: string | undefined;
  try {
    // An unauthenticated request: a protected MCP server answers 401 with its metadata URL.
    const res = await fetchImpl(mcp, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel();
    if (res.status === 401) challenge = resourceMetadataParam(res.headers.get('www-authenticate'));
  } catch (err) {
    throw new NexusError('upstream_unreachable', undefined, {
      detail: 'the MCP endpoint could not be reached',
      cause: err,
    });
  }
  const candidates = [
    ...(challenge === undefined ? [] : [new URL(challenge, mcp)]),
    wellKnown(mcp, 'oauth-protected-resource'),
    new URL(`${mcp.origin}/.well-known/oauth-protected-resource`),
  ];
  let prm: Record<string, unknown> | undefined;
  let prmUrl: URL | undefined;
  for (const c of candidates) {
    prm = await getJson(c, fetchImpl);
    if (prm !== undefined) {
      prmUrl = c;
      break;
    }
  }
  if (prm === undefined || prmUrl === undefined) {
    throw fail('the MCP server publishes no protected resource metadata (RFC 9728)');
  }
  const resource = str(prm.resource);
  const normal = (u: string) => u.replace(/\/$/, '');
  if (resource === undefined || normal(resource) !== normal(mcp.href)) {
    throw fail("the protected resource metadata's resource is not this MCP endpoint");
  }
  const servers = Array.isArray(prm.authorization_servers)
    ? prm.authorization_servers.filter((s): s is string => typeof s === 'string')
    : [];
  const asUrl = servers[0];
  if (asUrl === undefined)
    throw fail('the protected resource metadata names no authorization server');
  const as = new URL(asUrl);
  let meta: Record<string, unknown> | undefined;
  for (const c of [
    wellKnown(as, 'oauth-authorization-server'),
    wellKnown(as, 'openid-configuration'),
    new URL(`${as.href.replace(/\/$/, '')}/.well-known/openid-configuration`),
  ]) {
    meta = await getJson(c, fetchImpl);
    if (meta !== undefined) break;
  }
  if (meta === undefined) throw fail('the authorization server publishes no metadata (RFC 8414)');
  if (normal(str(meta.issuer) ?? '') !== normal(as.href)) {
    throw fail("the authorization server metadata's issuer is not the server it was found for");
  }
  const authorizationEndpoint = str(meta.authorization_endpoint);
  const tokenEndpoint = str(meta.token_endpoint);
  if (authorizationEndpoint === undefined || tokenEndpoint === undefined) {
    throw fail('the authorization server metadata lacks its authorization or token endpoint');
  }
  for (const u of [authorizationEndpoint, tokenEndpoint]) {
    if (!isAllowedDiscoveryUrl(new URL(u)))
      throw fail('an OAuth endpoint is neither https nor loopback http');
  }
  const pkce = Array.isArray(meta.code_challenge_methods_supported)
    ? meta.code_challenge_methods_supported
    : [];
  if (!pkce.includes('S256')) {
    throw fail('the authorization server does not support PKCE S256, which MCP requires');
  }
  const scopes = Array.isArray(prm.scopes_supported)
    ? prm.scopes_supported.filter((s): s is string => typeof s === 'string')
    : undefined;
  return {
    resource,
    resourceMetadataUrl: prmUrl.href,
    issuer: str(meta.issuer) as string,
    authorizationEndpoint,
    tokenEndpoint,
    ...(str(meta.registration_endpoint) === undefined
      ? {}
      : { registrationEndpoint: str(meta.registration_endpoint) }),
    ...(scopes === undefined || scopes.length === 0 ? {} : { scopes }),
    clientIdMetadataDocuments: meta.client_id_metadata_document_supported === true,
  };
}
