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
  readonly removeHeaders: readonly string[];
  readonly minSecretLength: number;
}

export interface ResponseScrubber {
  readonly headers: Record<string, string | string[]>;
  readonly headerRedactions: number;
  /** The body has a content coding (gzip, deflate, br): relay it through {@link stream}. */
  readonly coded: boolean;
  /** A redactor for an identity-coded body (see `relay.ts`). */
  redactor(): Redactor;
  /** A scrub stream that decodes, then redacts, for a coded body. */
  stream(): ScrubStream;
}

// Every secret this process has sent to any upstream is redacted from every response, not
// only the request's own: an upstream that learned a secret some other way (two services
// on one host, a shared log) still cannot hand it to an agent. Only values that travel
// upstream are here (`AppliedAuth.secrets`): a signing key, a private key or a client
// secret sent only to a token endpoint was never received by an upstream the agent reads.
// The redactor reveals nothing about a partial match (`scrub/redactor.ts`), so the union
// answers an agent's probe only for a complete secret.
//
// The union is bounded; compiling the automaton is the costly part (linear in the total
// length of the secrets), so it is rebuilt only when a new secret appears.
//
// MUST: the request's own secrets are always in the matcher. They are moved to the young
// end first (least recently used goes first), so an eviction can never drop them.
// MUST: the bound stays small. Every new derived token (OAuth refresh, token exchange per
// lease) recompiles the union synchronously: at 10 000 secrets that stalled the event loop
// for seconds per new token and took gigabytes (security suite, issue 6).
export const MAX_REMEMBERED_SECRETS = 64;
/** Total bytes of remembered secrets (a few long JWT access tokens fill it before 64 do). */
export const MAX_REMEMBERED_BYTES = 32 * 1024;
const remembered = new Map<string, number>(); // secret -> its length in bytes, oldest first
let rememberedBytes = 0;
let unionMatcher: Matcher | undefined;
let unionMinLength = -1;

function matcherFor(secrets: readonly string[], minLength: number): Matcher {
  const own = secrets.filter((s) => isRedactable(s, { minLength }));
  for (const s of own) {
    const size = remembered.get(s);
    if (size !== undefined) {
      remembered.delete(s);
      remembered.set(s, size);
    }
  }
  for (const s of own) {
    if (remembered.has(s)) continue;
    const size = Buffer.byteLength(s);
    // Forget the least recently used: never one of this request's (they are youngest).
    for (const [oldest, oldSize] of remembered) {
      const full =
        remembered.size >= MAX_REMEMBERED_SECRETS || rememberedBytes + size > MAX_REMEMBERED_BYTES;
      if (!full || own.includes(oldest)) break;
      remembered.delete(oldest);
      rememberedBytes -= oldSize;
    }
    remembered.set(s, size);
    rememberedBytes += size;
    unionMatcher = undefined;
  }
  if (unionMatcher === undefined || unionMinLength !== minLength) {
    unionMatcher = compileMatcher(secretPatterns([...remembered.keys()], { minLength }));
    unionMinLength = minLength;
  }
  return unionMatcher;
}

/** True for a field name only Nexus may send (`Nexus-Error`, `Nexus-Request-Id`, ...). */
export function isNexusFieldName(name: string): boolean {
  return name.toLowerCase().startsWith('nexus-');
}

export function createResponseScrubber(options: ResponseScrubberOptions): ResponseScrubber {
  const matcher = matcherFor(options.secrets, options.minSecretLength);
  const scrubbed = scrubHeaders(options.headers, {
    patterns: matcher,
    remove: options.removeHeaders,
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
    redactor: () => createRedactor(matcher),
    stream: () =>
      createScrubStream({
        patterns: matcher,
        contentEncoding: coding,
      }),
  };
}
