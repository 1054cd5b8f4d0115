/**
 * The OAuth 2.0 client side shared by the `oauth2_*` mechanics: client authentication
 * (`client_secret_basic` / `client_secret_post`), the token request (RFC 6749 §3.2 over
 * undici, bounded in time and size, no redirects) and a validated token response. Failures
 * tell a rejected grant (RFC 6749 §5.2 `error`, e.g. `invalid_grant`) from an unavailable
 * endpoint, so connections can report `connection_expired`. The token cache with
 * single-flight lives in `token-cache.ts`.
 *
 * MUST: nothing the token endpoint says (body, error description, URL) ends up in an error
 * message, a log line or a problem response: failures become stable codes only.
 */
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { z } from 'zod';
import { NexusError, type ErrorCode } from '@nexus-proxy/protocol';
import { credentialUnavailable } from './errors.js';

/** Token lifetime assumed when the endpoint omits `expires_in` (RFC 6749 §5.1 allows it). */
export const DEFAULT_TOKEN_TTL_MS = 5 * 60_000;
/** Largest token endpoint response read, in bytes. */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024;

/** How the client authenticates at the token endpoint (RFC 6749 §2.3.1). */
export const clientAuthMethod = z.enum(['client_secret_basic', 'client_secret_post']);

/** A scope string: space-separated RFC 6749 scope tokens. */
export const scopeString = z
  .string()
  .min(1)
  .max(2048)
  .regex(
    /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/,
    'must be space-separated scope tokens',
  );

/** A successful token endpoint response (RFC 6749 §5.1), validated. */
export interface TokenResponse {
  readonly accessToken: string;
  readonly tokenType: string;
  /** Lifetime in milliseconds, when the endpoint said. */
  readonly expiresInMs: number | undefined;
  readonly refreshToken: string | undefined;
  readonly scope: string | undefined;
}

/** What a token request needs. */
export interface TokenRequest {
  readonly tokenUrl: string;
  readonly clientId: string;
  /** Absent for public clients (PKCE only). */
  readonly clientSecret: string | undefined;
  readonly authMethod: 'client_secret_basic' | 'client_secret_post';
  /** Grant parameters (`grant_type`, `scope`, `code`...). Repeated keys as arrays. */
  readonly params: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly timeoutMs: number;
  readonly dispatcher: Dispatcher;
}

/**
 * Why a token request failed: `rejected` when the endpoint answered 400/401 with an
 * RFC 6749 §5.2 error (`error` holds the code, e.g. `invalid_grant`), `unavailable` for
 * anything else (network, timeout, 5xx, malformed response).
 */
export class TokenEndpointError extends Error {
  constructor(
    readonly kind: 'rejected' | 'unavailable',
    readonly error: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      kind === 'rejected' ? 'token endpoint rejected the request' : 'token endpoint unavailable',
      options,
    );
    this.name = 'TokenEndpointError';
  }

  /**
   * The stable Nexus error for this failure. Its safe detail says whether the endpoint
   * refused or could not be used; never the endpoint's text, not even its RFC 6749 `error`
   * code (kept in `cause`, for logs): the agent learns nothing of the endpoint's answer.
   */
  toNexusError(code: ErrorCode = 'credential_unavailable'): NexusError {
    const detail =
      this.kind === 'rejected'
        ? 'the token endpoint refused to issue a token'
        : 'the token endpoint could not be reached or gave no usable token';
    return new NexusError(code, 'the token endpoint did not issue a token', {
      cause: this,
      detail,
    });
  }
}

/**
 * `application/x-www-form-urlencoded` as RFC 6749 Appendix B wants it for client
 * credentials in Basic auth: form-encode, then `%20` for space.
 */
function formEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

async function readLimited(body: Dispatcher.ResponseData['body']): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_TOKEN_RESPONSE_BYTES) {
      body.destroy();
      throw new TokenEndpointError('unavailable', undefined);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Calls a token endpoint. Resolves with the validated response or rejects with a
 * `TokenEndpointError` whose message and fields never contain the endpoint's text beyond
 * the RFC 6749 `error` code (checked against its character set).
 */
export async function requestToken(req: TokenRequest): Promise<TokenResponse> {
  const form = new URLSearchParams();
  for (const [k, v] of Object.entries(req.params)) {
    if (v === undefined) continue;
    for (const item of typeof v === 'string' ? [v] : v) form.append(k, item);
  }
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  if (req.authMethod === 'client_secret_basic' && req.clientSecret !== undefined) {
    const pair = `${formEncode(req.clientId)}:${formEncode(req.clientSecret)}`;
    headers['authorization'] = `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
  } else {
    form.set('client_id', req.clientId);
    if (req.clientSecret !== undefined) form.set('client_secret', req.clientSecret);
  }

  let status: number;
  let raw: Buffer;
  try {
    const res = await undiciRequest(req.tokenUrl, {
      method: 'POST',
      headers,
      body: form.toString(),
      dispatcher: req.dispatcher,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
      signal: AbortSignal.timeout(req.timeoutMs),
    });
    status = res.statusCode;
    raw = await readLimited(res.body);
  } catch (err) {
    if (err instanceof TokenEndpointError) throw err;
    throw new TokenEndpointError('unavailable', undefined, { cause: summarise(err) });
  }

  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    json = undefined;
  }
  const obj = (json !== null && typeof json === 'object' ? json : {}) as Record<string, unknown>;
  if (status < 200 || status >= 300) {
    const code =
      typeof obj['error'] === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(obj['error'])
        ? obj['error']
        : undefined;
    throw new TokenEndpointError(
      (status === 400 || status === 401) && code !== undefined ? 'rejected' : 'unavailable',
      code,
    );
  }
  const accessToken = obj['access_token'];
  const tokenType = obj['token_type'];
  const expiresIn = obj['expires_in'];
  const refreshToken = obj['refresh_token'];
  const scope = obj['scope'];
  if (
    typeof accessToken !== 'string' ||
    accessToken === '' ||
    accessToken.length > 16_384 ||
    /[^\x21-\x7e]/.test(accessToken) ||
    typeof tokenType !== 'string' ||
    tokenType.toLowerCase() !== 'bearer'
  ) {
    // A DPoP or MAC token cannot be injected as a bearer header; an unusable value is refused.
    throw new TokenEndpointError('unavailable', undefined);
  }
  const expiresNum = typeof expiresIn === 'string' ? Number(expiresIn) : expiresIn;
  return {
    accessToken,
    tokenType,
    expiresInMs:
      typeof expiresNum === 'number' && Number.isFinite(expiresNum) && expiresNum > 0
        ? expiresNum * 1000
        : undefined,
    refreshToken:
      typeof refreshToken === 'string' && refreshToken !== '' && !/[\r\n\0]/.test(refreshToken)
        ? refreshToken
        : undefined,
    scope: typeof scope === 'string' ? scope : undefined,
  };
}

/** Only the name and code of a transport error are kept (its message may hold the URL). */
function summarise(err: unknown): { name?: string; code?: string } {
  const e = (err ?? {}) as { name?: unknown; code?: unknown };
  return {
    name: typeof e.name === 'string' ? e.name : undefined,
    code: typeof e.code === 'string' ? e.code : undefined,
  };
}

/**
 * When a token response expires (ms since the epoch): `expires_in` from now, or
 * `DEFAULT_TOKEN_TTL_MS` when the endpoint did not say, capped at a day.
 */
export function expiryOf(now: number, expiresInMs: number | undefined): number {
  return now + Math.min(expiresInMs ?? DEFAULT_TOKEN_TTL_MS, 24 * 3600_000);
}

/** The dispatcher token requests go through, and how to release it. */
export function tokenDispatcher(
  provided: Dispatcher | undefined,
  timeoutMs: number,
): { dispatcher: Dispatcher; close(): Promise<void> } {
  if (provided !== undefined) return { dispatcher: provided, close: () => Promise.resolve() };
  // Own pool: redirects are never followed (undici's default), connect is bounded too.
  const agent = new Agent({ connect: { timeout: timeoutMs }, connections: 8 });
  return { dispatcher: agent, close: () => agent.close() };
}

/** `credential_unavailable` for a token endpoint that did not deliver. */
export function tokenUnavailable(err: unknown): NexusError {
  if (err instanceof TokenEndpointError) return err.toNexusError();
  if (err instanceof NexusError) return err;
  return credentialUnavailable('the token endpoint did not issue a token');
}
