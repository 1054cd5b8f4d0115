// Response header scrubbing: drop the headers an agent must never see, redact every
// secret pattern from the rest (Location included) and from the reason phrase.
//
// Security invariants:
// - MUST drop `set-cookie` (an upstream session is a credential derived from ours) and
//   the authentication challenge/info headers (they describe the upstream's view of the
//   injected credential, e.g. `error_description` about a token).
// - MUST redact every remaining value, whatever its name: an upstream may echo the
//   credential anywhere (`Location: ...?access_token=...`, debug headers).
import { compileMatcher, type Matcher } from './matcher.js';
import { redactAll } from './redactor.js';
import { secretPatterns } from './patterns.js';

/**
 * Response headers removed by default (lower case):
 * - cookies: `set-cookie`, `set-cookie2`;
 * - authentication: `www-authenticate`, `proxy-authenticate`, `authentication-info`,
 *   `proxy-authentication-info` (the agent does not authenticate to the upstream; these
 *   describe the injected credential);
 * - hop-by-hop (RFC 9110 §7.6.1): `connection`, `keep-alive`, `proxy-connection`,
 *   `transfer-encoding`, `te`, `trailer`, `upgrade`, plus every name listed in `Connection`;
 * - body framing and integrity, invalid once the body is decoded and redacted:
 *   `content-length`, `content-encoding`, `content-md5`, `digest`, `content-digest`,
 *   `repr-digest`;
 * - `alt-svc` (it would advertise the upstream's endpoints as the proxy's).
 */
export const DEFAULT_REMOVED_RESPONSE_HEADERS: readonly string[] = [
  'set-cookie',
  'set-cookie2',
  'www-authenticate',
  'proxy-authenticate',
  'authentication-info',
  'proxy-authentication-info',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'content-encoding',
  'content-md5',
  'digest',
  'content-digest',
  'repr-digest',
  'alt-svc',
];

/** A header map as undici and node:http give it (any name case). */
export type HeaderMap = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Options of {@link scrubHeaders}. */
export interface ScrubHeadersOptions {
  /** The secret values or a compiled matcher (`compileMatcher(secretPatterns(...))`). */
  patterns: readonly string[] | Matcher;
  /**
   * Further header names to remove (any case), e.g. a service's configured list. They
   * are added to {@link DEFAULT_REMOVED_RESPONSE_HEADERS}, which cannot be turned off.
   */
  remove?: readonly string[];
  /** The upstream reason phrase, redacted into `statusText`. */
  statusText?: string;
  /** Replacement text (default `[REDACTED]`). */
  replacement?: string;
  /**
   * The secrets with upper-case letters, lower-cased: a header name reaches us lower-cased,
   * so a secret in a name is looked for in that case too.
   */
  loweredSecrets?: readonly string[];
}

/** Result of {@link scrubHeaders}. */
export interface ScrubHeadersResult {
  /** New header map, lower-case names; multi-valued headers stay arrays. */
  headers: Record<string, string | string[]>;
  /** The redacted reason phrase ('' when none was given). */
  statusText: string;
  /** Number of redacted regions across all values and the reason phrase. */
  count: number;
  /** Lower-case names that were removed. */
  removed: string[];
}

const DEFAULT_REMOVALS: ReadonlySet<string> = new Set(DEFAULT_REMOVED_RESPONSE_HEADERS);
/** The removal set of each frozen `remove` list (a service's, from the frozen config). */
const removalsByList = new WeakMap<readonly string[], ReadonlySet<string>>();
/** Every set {@link removalsOf} hands out more than once: never modified. */
const cachedRemovals = new WeakSet<ReadonlySet<string>>([DEFAULT_REMOVALS]);

/** The lower-case names to remove: the defaults and `extra`, built once per frozen list. */
function removalsOf(extra: readonly string[] | undefined): ReadonlySet<string> {
  if (extra === undefined || extra.length === 0) return DEFAULT_REMOVALS;
  let set = removalsByList.get(extra);
  if (set !== undefined) return set;
  set = new Set([...DEFAULT_REMOVED_RESPONSE_HEADERS, ...extra.map((n) => n.toLowerCase())]);
  // A list that can still change is read afresh every time.
  if (Object.isFrozen(extra)) {
    removalsByList.set(extra, set);
    cachedRemovals.add(set);
  }
  return set;
}

/**
 * Removes the configured headers and redacts secrets in every remaining value and in
 * the reason phrase. Does not modify its input.
 *
 * @example
 * const { headers, statusText, count } = scrubHeaders(res.headers, { patterns, statusText: res.statusText });
 */
export function scrubHeaders(headers: HeaderMap, options: ScrubHeadersOptions): ScrubHeadersResult {
  const matcher = Array.isArray(options.patterns)
    ? compileMatcher(secretPatterns(options.patterns as readonly string[]))
    : (options.patterns as Matcher);
  let remove = removalsOf(options.remove);
  // Names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1).
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'connection' || value === undefined) continue;
    for (const v of typeof value === 'string' ? [value] : value) {
      for (const token of v.split(',')) {
        const t = token.trim().toLowerCase();
        if (t === '' || remove.has(t)) continue;
        // A copy: the cached set is shared by every response of the service.
        if (cachedRemovals.has(remove)) remove = new Set(remove);
        (remove as Set<string>).add(t);
      }
    }
  }
  let count = 0;
  const redact = (value: string): string => {
    const r = redactValue(matcher, value, options.replacement);
    count += r.count;
    return r.value;
  };
  const out: Record<string, string | string[]> = {};
  const removed: string[] = [];
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined) continue;
    if (remove.has(name)) {
      removed.push(name);
      continue;
    }
    // A secret could be in a header name too (e.g. `x-debug-<token>: 1`), lower-cased by the
    // HTTP client. A redacted name is no longer a valid field name, so such a header MUST be
    // dropped whole (relaying it would fail the whole response; security suite, issue 6).
    const safeName = redact(name);
    if (safeName !== name || options.loweredSecrets?.some((l) => name.includes(l)) === true) {
      removed.push(name);
      continue;
    }
    const values = typeof value === 'string' ? [value] : [...value];
    const redacted = values.map(redact);
    const prev = out[safeName];
    if (prev === undefined) out[safeName] = typeof value === 'string' ? redacted[0]! : redacted;
    else out[safeName] = [...(typeof prev === 'string' ? [prev] : prev), ...redacted];
  }
  const statusText = options.statusText === undefined ? '' : redact(options.statusText);
  return { headers: out, statusText, count, removed };
}

/**
 * Redacts one header value. Header values are byte strings: each char is one wire byte
 * (latin1), so the UTF-8 secret patterns match the wire bytes. A client that decoded the
 * value as UTF-8 is covered by a second pass over the UTF-8 bytes. A whole value is
 * scanned at once: nothing about a partial match can show.
 */
function redactValue(
  matcher: Matcher,
  value: string,
  replacement?: string,
): { value: string; count: number } {
  // Too short for the shortest pattern in either reading (UTF-8 is at least as long as
  // Latin-1): nothing to scan (see `redactAll`).
  if (Buffer.byteLength(value, 'utf8') < matcher.minLength) return { value, count: 0 };
  let v = value;
  let count = 0;
  // eslint-disable-next-line no-control-regex
  const bytesOnly = /^[\u0000-\u00ff]*$/.test(v);
  if (bytesOnly) {
    const r = redactAll(matcher, Buffer.from(v, 'latin1'), replacement);
    if (r.count > 0) {
      v = r.output.toString('latin1');
      count += r.count;
    }
  }
  // eslint-disable-next-line no-control-regex
  if (!bytesOnly || !/^[\u0000-\u007f]*$/.test(v)) {
    const r = redactAll(matcher, Buffer.from(v, 'utf8'), replacement);
    if (r.count > 0) {
      v = r.output.toString('utf8');
      count += r.count;
    }
  }
  return { value: v, count };
}
