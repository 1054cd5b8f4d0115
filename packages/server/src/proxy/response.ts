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
import { compileMatcher, createRedactor, type Matcher, type Redactor } from '../scrub/matcher.js';
import { secretsFor } from '../scrub/encodings.js';
import { scrubHeaders } from '../scrub/headers.js';
import { createScrubStream, parseContentEncoding, type ScrubStream } from '../scrub/body.js';

export interface ResponseScrubberOptions {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
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

// Every secret this process has injected into any request is redacted from every
// response, not only the request's own: an upstream that learned a secret some other way
// (two services on one host, a shared log) still cannot hand it to an agent. The union is
// bounded; compiling the Aho-Corasick automaton is the costly part, so it is rebuilt only
// when a new secret appears.
//
// MUST: the request's own secrets are always in the matcher. They are moved to the young
// end first (least recently used goes first), so an eviction can never drop them.
// MUST: the bound stays small. Every new derived token (OAuth refresh, token exchange per
// lease, daily SigV4 key) recompiles the union synchronously, at a cost linear in its size:
// at 10 000 secrets that stalled the event loop for seconds per new token and took
// gigabytes (security suite, issue 6).
export const MAX_REMEMBERED_SECRETS = 64;
const remembered = new Set<string>();
let unionMatcher: Matcher | undefined;
let unionMinLength = -1;

function matcherFor(secrets: readonly string[], minLength: number): Matcher {
  const own = secrets.filter((s) => Buffer.byteLength(s) >= minLength);
  for (const s of own) {
    if (remembered.delete(s)) remembered.add(s);
  }
  for (const s of own) {
    if (remembered.has(s)) continue;
    if (remembered.size >= Math.max(MAX_REMEMBERED_SECRETS, own.length)) {
      // Forget the least recently used: never one of this request's (they are youngest).
      const oldest = remembered.values().next().value;
      if (oldest !== undefined) remembered.delete(oldest);
    }
    remembered.add(s);
    unionMatcher = undefined;
  }
  if (unionMatcher === undefined || unionMinLength !== minLength) {
    unionMatcher = compileMatcher(secretsFor([...remembered], { minLength }));
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
  const coding = parseContentEncoding(options.headers['content-encoding']);
  return {
    headers: scrubbed.headers,
    headerRedactions: scrubbed.count,
    coded: coding !== 'identity',
    redactor: () => createRedactor(matcher),
    stream: () =>
      createScrubStream({
        patterns: matcher,
        contentEncoding: options.headers['content-encoding'],
      }),
  };
}
