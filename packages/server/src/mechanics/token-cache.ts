/**
 * Shared machinery for mechanics that derive short-lived tokens (OAuth2, JWT bearer,
 * GitHub App, token exchange): a token cache with single-flight refresh, the HTTP client
 * for token endpoints, and the zod pieces their options share.
 *
 * MUST: a derived token is a secret like the credential it came from. It never appears in
 * an error, a log line or an audit record; the mechanic returns it in `AppliedAuth.secrets`
 * so the scrubber redacts it from responses.
 */
import { request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { isLoopbackHost } from '../config/schema.js';
import { parseDuration } from '../config/units.js';

/** A token and when it stops being usable. */
export interface CachedToken {
  readonly value: string;
  /** Expiry, in ms since the epoch. */
  readonly expiresAt: number;
}

/** Options for {@link TokenCache}. */
export interface TokenCacheOptions {
  readonly clock: () => number;
  /**
   * Refresh this long before expiry (default 60 s), capped at half the token's lifetime so
   * short-lived tokens are still used.
   */
  readonly refreshMarginMs?: number;
  /** Entries kept at most (default 10 000); expired entries go first, then the oldest. */
  readonly maxEntries?: number;
  /** Called after each fetch (not for cache hits), with whether it succeeded (metrics). */
  readonly onFetch?: (ok: boolean) => void;
}

interface Entry {
  readonly token: CachedToken;
  readonly fetchedAt: number;
}

/**
 * Tokens by key, each fetched at most once at a time (single-flight): concurrent requests
 * for a missing or stale key share one fetch. A failed fetch is not cached; the next call
 * tries again.
 *
 * @example
 * const cache = new TokenCache({ clock: Date.now });
 * const token = await cache.get(`${credential.name}:${credential.version}`, () => fetchToken());
 */
export class TokenCache {
  readonly #clock: () => number;
  readonly #margin: number;
  readonly #max: number;
  readonly #onFetch: ((ok: boolean) => void) | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();

  constructor(options: TokenCacheOptions) {
    this.#clock = options.clock;
    this.#margin = options.refreshMarginMs ?? 60_000;
    this.#max = options.maxEntries ?? 10_000;
    this.#onFetch = options.onFetch;
  }

  /** Number of cached entries (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  /** The cached token for `key` if it is still fresh, else one from `fetch` (single-flight). */
  get(key: string, fetch: () => Promise<CachedToken>): Promise<CachedToken> {
    const entry = this.#entries.get(key);
    if (entry !== undefined && this.#fresh(entry)) return Promise.resolve(entry.token);
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const started = this.#clock();
    const p = (async () => {
      try {
        let token: CachedToken;
        try {
          token = await fetch();
        } catch (err) {
          this.#onFetch?.(false);
          throw err;
        }
        this.#onFetch?.(true);
        this.#store(key, { token, fetchedAt: started });
        return token;
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, p);
    return p;
  }

  /**
   * Drops the cached token for `key`. With `value`, only if that is still the cached token,
   * so a 401 on an old token does not discard a newer one fetched meanwhile.
   */
  invalidate(key: string, value?: string): void {
    const entry = this.#entries.get(key);
    if (entry !== undefined && (value === undefined || entry.token.value === value)) {
      this.#entries.delete(key);
    }
  }

  /** Drops every cached token. */
  clear(): void {
    this.#entries.clear();
  }

  #fresh(entry: Entry): boolean {
    const lifetime = entry.token.expiresAt - entry.fetchedAt;
    const margin = Math.min(this.#margin, Math.max(0, lifetime / 2));
    return this.#clock() < entry.token.expiresAt - margin;
  }

  #store(key: string, entry: Entry): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      const now = this.#clock();
      for (const [k, e] of this.#entries) if (e.token.expiresAt <= now) this.#entries.delete(k);
      while (this.#entries.size >= this.#max) {
        const oldest = this.#entries.keys().next().value;
        if (oldest === undefined) break;
        this.#entries.delete(oldest);
      }
    }
    this.#entries.set(key, entry);
  }
}

// ---- option schemas ---------------------------------------------------------------------

/**
 * A token endpoint URL: https, or plain http only to a loopback host (a local STS or a
 * test server). No user info or fragment (credentials live in the vault).
 */
export const tokenEndpointUrl = z.string().superRefine((s, ctx) => {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return;
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    ctx.addIssue({ code: 'custom', message: 'must be https (plain http only to loopback)' });
  }
  if (url.username !== '' || url.password !== '') {
    ctx.addIssue({ code: 'custom', message: 'must not contain user info' });
  }
  if (url.hash !== '') ctx.addIssue({ code: 'custom', message: 'must not have a fragment' });
});

/**
 * A duration option (`30s`, `5m`, `1h`) between `minMs` and `maxMs`, parsed to ms. A number
 * is taken as already-parsed milliseconds: options are parsed twice (by the config loader,
 * then by the mechanic factory), so the transform must accept its own output.
 */
export function durationOption(minMs: number, maxMs: number) {
  return z.union([z.string(), z.number()]).transform((s, ctx) => {
    const ms = typeof s === 'number' ? s : parseDuration(s);
    if (ms === undefined || ms < minMs || ms > maxMs) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a duration between ${minMs / 1000}s and ${maxMs / 1000}s, e.g. 5m`,
      });
      return z.NEVER;
    }
    return ms;
  });
}

// ---- token endpoint client --------------------------------------------------------------

/** A request to a token endpoint. */
export interface TokenRequest {
  readonly url: string;
  /** `application/x-www-form-urlencoded` body. */
  readonly form?: Readonly<Record<string, string | undefined>>;
  /** JSON body (GitHub's access-token endpoint). */
  readonly json?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly dispatcher?: Dispatcher;
  /** Whole-exchange timeout (default 10 s). */
  readonly timeoutMs?: number;
  /** Largest accepted response body (default 64 KiB). */
  readonly maxBytes?: number;
}

/** A token endpoint's JSON answer (an object); the caller picks its fields. */
export type TokenResponse = Readonly<Record<string, unknown>>;

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/**
 * POSTs to a token endpoint and returns its JSON object. Failures are `NexusError`s whose
 * messages name neither the URL's secrets nor any response content:
 * unreachable -> `upstream_unreachable`, too slow -> `upstream_timeout`, a non-2xx answer
 * or an answer that is not a JSON object -> `credential_unavailable`.
 */
export async function postTokenRequest(what: string, req: TokenRequest): Promise<TokenResponse> {
  const timeout = req.timeoutMs ?? 10_000;
  const max = req.maxBytes ?? 65_536;
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
  let body: string | undefined;
  if (req.form !== undefined) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(req.form)) if (v !== undefined) params.set(k, v);
    body = params.toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
  } else if (req.json !== undefined) {
    body = JSON.stringify(req.json);
    headers['content-type'] = 'application/json';
  }
  let res: Dispatcher.ResponseData;
  try {
    res = await request(req.url, {
      method: 'POST',
      headers,
      body,
      dispatcher: req.dispatcher,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      signal: AbortSignal.timeout(timeout),
    });
  } catch (err) {
    const code = (err as { code?: unknown; name?: unknown }).code;
    const timedOut =
      (typeof code === 'string' && TIMEOUT_CODES.has(code)) ||
      (err as { name?: unknown }).name === 'TimeoutError';
    throw new NexusError(
      timedOut ? 'upstream_timeout' : 'upstream_unreachable',
      `${what}: token endpoint ${timedOut ? 'timed out' : 'unreachable'}`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) {
        res.body.destroy();
        throw new NexusError('credential_unavailable', `${what}: token response too large`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof NexusError) throw err;
    throw new NexusError('upstream_unreachable', `${what}: token response interrupted`);
  }
  if (res.statusCode < 200 || res.statusCode > 299) {
    // The body may echo the assertion or the client secret: never surface it.
    throw new NexusError(
      'credential_unavailable',
      `${what}: token endpoint answered ${res.statusCode}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new NexusError('credential_unavailable', `${what}: token response is not a JSON object`);
  }
  return parsed as TokenResponse;
}

/** A non-empty string field of a token response, else `credential_unavailable`. */
export function tokenField(what: string, response: TokenResponse, field: string): string {
  const value = response[field];
  if (typeof value !== 'string' || value === '' || /[\r\n\0]/.test(value)) {
    throw new NexusError(
      'credential_unavailable',
      `${what}: token response has no usable ${field}`,
    );
  }
  return value;
}

/**
 * The expiry of an OAuth token response (`expires_in` seconds) in ms since the epoch,
 * capped at `maxMs` from now; `defaultMs` when the endpoint does not say.
 */
export function expiresInToMs(
  response: TokenResponse,
  now: number,
  defaultMs: number,
  maxMs = 24 * 3600_000,
): number {
  const raw = response['expires_in'];
  const seconds = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
  const ms =
    typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0
      ? seconds * 1000
      : defaultMs;
  return now + Math.min(ms, maxMs);
}
