/**
 * OAuth client registration for an upstream MCP server (MCP 2025-11-25 "Authorization",
 * §Client Registration Approaches), in the order the revision gives:
 *
 * 1. **Client ID Metadata Documents** (draft-ietf-oauth-client-id-metadata-document): when
 *    the authorization server advertises `client_id_metadata_document_supported`, the
 *    client_id is the HTTPS URL of a JSON document Nexus serves on its admin listener
 *    (`GET /v1/mcp/clients/{service}`, next to the OAuth callback). Nothing is sent to the
 *    server ahead of time; it fetches the document when it sees the client_id. A public
 *    client (`token_endpoint_auth_method: none`, PKCE): the document may hold no secret.
 * 2. **Dynamic Client Registration** (RFC 7591): a POST to the server's
 *    `registration_endpoint`; a confidential client (`client_secret_basic`) when the server
 *    issues a secret.
 * 3. **Pre-registered** client credentials: the operator stores them with `nexus credential
 *    set` and no registration is made.
 *
 * The result is the service's client credential in the vault (encrypted, like every
 * credential): `client_id`, `client_secret` when one was issued, the token endpoint auth
 * method and how it was obtained. Never returned by the admin API.
 *
 * MUST: the registration endpoint was found by discovery (https, or http on loopback); no
 * redirect is followed; the answer is bounded; a registration answer with a different
 * redirect URI or auth method than asked for is refused. Nothing the server says ends up in
 * an error message: failures are stable codes with a fixed detail.
 */
import { NexusError } from '@nexus-proxy/protocol';
import { CONNECTION_CALLBACK_PATH } from '../mechanics/oauth2-authorization-code.js';
import { isAllowedDiscoveryUrl, type McpAuthDiscovery } from './discovery.js';

/** Path of the client ID metadata documents on the admin listener. */
export const CLIENT_METADATA_PATH = '/v1/mcp/clients';

/** How Nexus registered (a pre-registered client is stored by the operator instead). */
export type RegistrationMethod = 'cimd' | 'dcr';

/** The registration as stored in the service's client credential (vault fields). */
export interface McpClientRegistration {
  readonly method: RegistrationMethod;
  readonly clientId: string;
  /** Only from dynamic client registration; goes to the vault, never out. */
  readonly clientSecret?: string;
  readonly tokenEndpointAuthMethod: 'none' | 'client_secret_basic' | 'client_secret_post';
}

const MAX_BYTES = 64 * 1024;
const CLIENT_NAME = 'Nexus';

const fail = (detail: string) => new NexusError('upstream_invalid', undefined, { detail });

/**
 * The client ID metadata document URL for `service`, or undefined when the OAuth callback
 * (`redirectUri`) is not an https URL of the admin listener's callback path: the document
 * is served next to the callback, and a client_id must be an https URL.
 */
export function clientMetadataUrl(
  service: string,
  redirectUri: string | undefined,
): string | undefined {
  if (redirectUri === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(redirectUri);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'https:' || !u.pathname.endsWith(CONNECTION_CALLBACK_PATH)) return undefined;
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') return undefined;
  const base = u.pathname.slice(0, -CONNECTION_CALLBACK_PATH.length);
  return `${u.origin}${base}${CLIENT_METADATA_PATH}/${encodeURIComponent(service)}`;
}

/** The client ID metadata document (a public client; its `client_id` is its own URL). */
export function clientMetadataDocument(
  clientId: string,
  redirectUri: string,
): Record<string, unknown> {
  return {
    client_id: clientId,
    client_name: CLIENT_NAME,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
}

/** What `registerMcpClient` needs. */
export interface RegisterInput {
  readonly service: string;
  readonly discovery: McpAuthDiscovery;
  /** The OAuth callback the authorization server redirects to. */
  readonly redirectUri: string;
  /** Restricts the method; default: CIMD when possible, else DCR. */
  readonly prefer?: 'cimd' | 'dcr';
  readonly fetchImpl?: typeof fetch;
}

/**
 * Registers Nexus as a client of the MCP server's authorization server.
 *
 * @throws NexusError `upstream_invalid` (no usable method, a refused or malformed
 *   registration) or `upstream_unreachable`.
 */
export async function registerMcpClient(input: RegisterInput): Promise<McpClientRegistration> {
  const { discovery, redirectUri } = input;
  const cimdUrl = clientMetadataUrl(input.service, redirectUri);
  if (input.prefer !== 'dcr' && discovery.clientIdMetadataDocuments && cimdUrl !== undefined) {
    return { method: 'cimd', clientId: cimdUrl, tokenEndpointAuthMethod: 'none' };
  }
  if (input.prefer === 'cimd') {
    throw fail(
      discovery.clientIdMetadataDocuments
        ? 'client ID metadata documents need an https OAuth callback (auth.redirect_uri)'
        : 'the authorization server does not accept client ID metadata documents',
    );
  }
  const endpoint = discovery.registrationEndpoint;
  if (endpoint === undefined) {
    throw fail(
      'the authorization server offers no dynamic client registration: store pre-registered client credentials',
    );
  }
  const url = new URL(endpoint);
  if (!isAllowedDiscoveryUrl(url))
    throw fail('the registration endpoint is neither https nor loopback http');
  const asked = {
    client_name: CLIENT_NAME,
    // A server-side (confidential) client; some servers require the field.
    application_type: 'web',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
  let status: number;
  let text: string;
  try {
    const res = await (input.fetchImpl ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(asked),
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    status = res.status;
    text = await res.text();
  } catch (err) {
    throw new NexusError('upstream_unreachable', undefined, {
      detail: 'the registration endpoint could not be reached',
      cause: err,
    });
  }
  if (status !== 201 && status !== 200)
    throw fail('the authorization server refused the registration');
  if (text.length > MAX_BYTES) throw fail('the registration answer is too large');
  let body: Record<string, unknown>;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    body = v as Record<string, unknown>;
  } catch {
    throw fail('the registration answer is not a JSON object');
  }
  const clientId = body.client_id;
  // RFC 6749 Appendix A.1/A.2: client_id and client_secret are VSCHAR (printable ASCII).
  const vschar = (v: unknown): v is string =>
    typeof v === 'string' && v !== '' && v.length <= 2048 && /^[\x20-\x7e]+$/.test(v);
  if (!vschar(clientId)) throw fail('the registration answer has no usable client_id');
  // RFC 7591 §3.2.1: the server may change metadata; Nexus only accepts what it can use.
  const redirects = body.redirect_uris;
  if (redirects !== undefined && !(Array.isArray(redirects) && redirects.includes(redirectUri))) {
    throw fail('the registration answer changed the redirect URI');
  }
  const secret = body.client_secret;
  const method =
    body.token_endpoint_auth_method === undefined
      ? secret === undefined
        ? 'none'
        : 'client_secret_basic'
      : body.token_endpoint_auth_method;
  if (method !== 'none' && method !== 'client_secret_basic' && method !== 'client_secret_post') {
    throw fail('the registration answer names a token endpoint auth method Nexus does not use');
  }
  if (method !== 'none' && !vschar(secret)) {
    throw fail('the registration answer has no usable client_secret');
  }
  return {
    method: 'dcr',
    clientId,
    ...(method === 'none' ? {} : { clientSecret: secret as string }),
    tokenEndpointAuthMethod: method,
  };
}

/** The vault fields of a registration (the service's client credential). */
export function registrationFields(
  r: McpClientRegistration,
  issuer: string,
): Record<string, string> {
  return {
    client_id: r.clientId,
    ...(r.clientSecret === undefined ? {} : { client_secret: r.clientSecret }),
    token_endpoint_auth_method: r.tokenEndpointAuthMethod,
    registration: r.method,
    issuer,
  };
}
