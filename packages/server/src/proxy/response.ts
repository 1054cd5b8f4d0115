/**
 * Prepares an upstream response for the agent: headers scrubbed (configured removals,
 * hop-by-hop, framing) and a body stream that decodes any content coding and redacts
 * every injected secret in all its encodings.
 *
 * MUST: with secrets in play, no response byte reaches the agent without passing the
 * redactor; an unknown content coding fails closed (`upstream_invalid`).
 * MUST: no `Nexus-*` field of the upstream reaches the agent. Those names are Nexus's own
 * (`Nexus-Error` marks a refusal by Nexus, `Nexus-Request-Id` its audit id): an upstream
 * that could send them would pose as Nexus, e.g. a forged `Nexus-Error: signature_expired`
 * made the SDK re-sign and resend a POST the upstream had already received (issue 10).
 */
import { compileMatcher, type Matcher } from '../scrub/matcher.js';
import { createRedactor, type Redactor } from '../scrub/redactor.js';
import { isRedactable, secretPatterns } from '../scrub/patterns.js';
import { scrubHeaders } from '../scrub/headers.js';
import { createScrubStream, responseCoding, type ScrubStream } from '../scrub/body.js';

export interface ResponseScrubberOptions {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The values this request sent upstream (`AppliedAuth.secrets`). */
  readonly secrets: readonly string[];
  /** The upstream's origin: its responses are scrubbed of what was sent to it recently. */
  readonly origin?: string;
  readonly removeHeaders: readonly string[];
  readonly minSecretLength: number;
}

export interface ResponseScrubber {
  readonly headers: Record<string, string | string[]>;
  readonly headerRedactions: number;
  /** The body has a content coding (gzip, deflate, br): relay it through {@link stream}. */
  readonly coded: boolean;
  /** The longest secret (or reading of one) the redactors look for, in bytes. */
  readonly maxSecretLength: number;
  /** A redactor for an identity-coded body (see `relay.ts`). */
  redactor(): Redactor;
  /** A scrub stream that decodes, then redacts, for a coded body. */
  stream(): ScrubStream;
}

// Every secret recently sent to an upstream origin is redacted from every response of that
// origin, not only the request's own: an upstream holds what any service sent it (two
// services on one host, a log of earlier requests) and could hand it to another agent.
// Only values that travel upstream are here (`AppliedAuth.secrets`): a signing key, a
// private key or a client secret sent only to a token endpoint was never received by an
// upstream the agent reads, and a secret another origin received was never received by
// this one (issue 10: the process-wide union answered probes for every secret of every
// service). The redactor reveals nothing about a partial match (`scrub/redactor.ts`), so
// the union answers an agent's probe only for a complete secret.
//
// Compiling the automaton is the costly part (linear in the secrets' length times their
// distinct bytes), so an origin's matcher is rebuilt only when a secret new to it appears.
//
// MUST: the request's own secrets are always in the matcher. They are moved to the young
// end first (least recently used goes first), so an eviction never drops them.
// MUST: the bounds stay small, and a recompile never runs per request. An origin whose
// secrets churn past the bound (a token exchanged per lease, for more agents than the
// bound, in round robin) evicted and recompiled on every request (first review of issue
// 10: 30 ms each). After a few evictions in a second the origin's set stops changing for
// FREEZE_MS: a request whose own secret is not in it gets its own secrets plus the set,
// compiled once and cached, so both the request's secrets and the origin's stay redacted.
export const MAX_REMEMBERED_SECRETS = 64;
/** Total bytes of remembered secrets per origin (a few long JWT access tokens fill it). */
export const MAX_REMEMBERED_BYTES = 32 * 1024;
/** Origins whose recent secrets are remembered; the least recently used is forgotten. */
const MAX_ORIGINS = 1024;
/** Evictions an origin's set may see in a second before it stops changing for a while. */
const EVICTIONS_PER_SECOND = 4;
/** How long an origin's set stays as it is once it churned (ms). */
const FREEZE_MS = 30_000;
/** Matchers for requests whose secrets are outside their origin's set, by total size. */
const MAX_OUTSIDER_CACHE_BYTES = 32 * 1024 * 1024;

interface Compiled {
  readonly matcher: Matcher;
  /** The secrets, lower-cased, that have upper-case letters (header names are lower case). */
  readonly lowered: readonly string[];
  readonly bytes: number;
}

interface OriginUnion {
  readonly id: number;
  readonly secrets: Map<string, number>; // secret -> its length in bytes, oldest first
  bytes: number;
  /** Changes with every change of `secrets`. */
  version: number;
  /** When the last evictions happened (ms, `performance.now()`). */
  evictions: number[];
  /** The set takes no new secret before this time (ms), once it churned. */
  frozenUntil: number;
  compiled?: Compiled;
  minLength: number;
}

/** Counts compiles, for the tests that prove a recompile never runs per request. */
export const unionStats = { compiles: 0 };

const unions = new Map<string, OriginUnion>();
let unionIds = 0;
const outsiders = new Map<string, Compiled>();
let outsiderBytes = 0;

function compile(secrets: readonly string[], minLength: number): Compiled {
  unionStats.compiles++;
  const matcher = compileMatcher(secretPatterns(secrets, { minLength }));
  const lowered = secrets.map((s) => s.toLowerCase()).filter((l, i) => l !== secrets[i]);
  return { matcher, lowered, bytes: matcher.next.byteLength + matcher.out.byteLength };
}

function unionOf(origin: string, minLength: number): OriginUnion {
  let union = unions.get(origin);
  if (union !== undefined) {
    unions.delete(origin);
  } else {
    union = {
      id: unionIds++,
      secrets: new Map(),
      bytes: 0,
      version: 0,
      evictions: [],
      frozenUntil: 0,
      minLength,
    };
    if (unions.size >= MAX_ORIGINS) unions.delete(unions.keys().next().value as string);
  }
  unions.set(origin, union);
  if (union.minLength !== minLength) {
    union.minLength = minLength;
    union.compiled = undefined;
  }
  return union;
}

function matcherFor(
  origin: string,
  secrets: readonly string[],
  minLength: number,
  now: number,
): Compiled {
  const own = [...new Set(secrets.filter((s) => isRedactable(s, { minLength })))];
  const union = unionOf(origin, minLength);
  for (const s of own) {
    const size = union.secrets.get(s);
    if (size !== undefined) {
      union.secrets.delete(s);
      union.secrets.set(s, size);
    }
  }
  union.evictions = union.evictions.filter((t) => now - t < 1000);
  let outside = false;
  for (const s of own) {
    if (union.secrets.has(s)) continue;
    const size = Buffer.byteLength(s);
    const full = () =>
      union.secrets.size >= MAX_REMEMBERED_SECRETS || union.bytes + size > MAX_REMEMBERED_BYTES;
    if (full() && union.evictions.length >= EVICTIONS_PER_SECOND) {
      union.frozenUntil = Math.max(union.frozenUntil, now + FREEZE_MS);
    }
    if (full() && now < union.frozenUntil) {
      outside = true;
      continue;
    }
    // Forget the least recently used: never one of this request's (they are youngest).
    for (const [oldest, oldSize] of union.secrets) {
      if (!full() || own.includes(oldest)) break;
      union.secrets.delete(oldest);
      union.bytes -= oldSize;
      union.evictions.push(now);
    }
    union.secrets.set(s, size);
    union.bytes += size;
    union.version++;
    union.compiled = undefined;
  }
  if (!outside) {
    union.compiled ??= compile([...union.secrets.keys()], minLength);
    return union.compiled;
  }
  // Own secrets the set has no room for now: they and the set, compiled once, cached.
  const key = `${union.id}\0${union.version}\0${minLength}\0${[...own].sort().join('\0')}`;
  let hit = outsiders.get(key);
  if (hit !== undefined) {
    outsiders.delete(key);
  } else {
    hit = compile([...new Set([...union.secrets.keys(), ...own])], minLength);
    outsiderBytes += hit.bytes;
    for (const [k, v] of outsiders) {
      if (outsiderBytes <= MAX_OUTSIDER_CACHE_BYTES) break;
      outsiders.delete(k);
      outsiderBytes -= v.bytes;
    }
  }
  outsiders.set(key, hit);
  return hit;
}

/** True for a field name only Nexus may send (`Nexus-Error`, `Nexus-Request-Id`, ...). */
export function isNexusFieldName(name: string): boolean {
  return name.toLowerCase().startsWith('nexus-');
}

export function createResponseScrubber(options: ResponseScrubberOptions): ResponseScrubber {
  const { matcher, lowered } = matcherFor(
    options.origin ?? '',
    options.secrets,
    options.minSecretLength,
    performance.now(),
  );
  const scrubbed = scrubHeaders(options.headers, {
    patterns: matcher,
    remove: options.removeHeaders,
    loweredSecrets: lowered,
  });
  // Dropped here rather than in scrub/headers.ts: whatever the scrubber keeps, no
  // upstream field in the Nexus namespace survives (names are lower case by now).
  for (const name of Object.keys(scrubbed.headers)) {
    if (isNexusFieldName(name)) delete scrubbed.headers[name];
  }
  // Throws upstream_invalid for an unknown or stacked coding, before any header is sent.
  const coding = responseCoding(options.headers);
  return {
    headers: scrubbed.headers,
    headerRedactions: scrubbed.count,
    coded: coding !== 'identity',
    maxSecretLength: matcher.maxLength,
    redactor: () => createRedactor(matcher),
    stream: () =>
      createScrubStream({
        patterns: matcher,
        contentEncoding: coding,
      }),
  };
}
