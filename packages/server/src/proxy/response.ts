/**
 * Prepares an upstream response for the agent: headers scrubbed (configured removals,
 * hop-by-hop, framing) and a body stream that decodes any content coding and redacts
 * every injected secret in all its encodings.
 *
 * MUST: with secrets in play, no response byte reaches the agent without passing the
 * redactor; an unknown content coding fails closed (`upstream_invalid`).
 */
import type { Duplex } from 'node:stream';
import { compileMatcher, type Matcher } from '../scrub/matcher.js';
import { secretsFor } from '../scrub/encodings.js';
import { scrubHeaders } from '../scrub/headers.js';
import { createScrubStream } from '../scrub/body.js';

export interface ResponseScrubberOptions {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly secrets: readonly string[];
  readonly removeHeaders: readonly string[];
  readonly minSecretLength: number;
}

export interface ResponseScrubber {
  readonly headers: Record<string, string | string[]>;
  readonly headerRedactions: number;
  readonly body: Duplex;
  bodyRedactions(): number;
}

// Every secret this process has injected into any request is redacted from every
// response, not only the request's own: an upstream that learned a secret some other way
// (two services on one host, a shared log) still cannot hand it to an agent. The union is
// bounded; compiling the Aho-Corasick automaton is the costly part, so it is rebuilt only
// when a new secret appears.
const MAX_REMEMBERED_SECRETS = 10_000;
const remembered = new Set<string>();
let unionMatcher: Matcher | undefined;
let unionMinLength = -1;

function matcherFor(secrets: readonly string[], minLength: number): Matcher {
  for (const s of secrets) {
    if (Buffer.byteLength(s) < minLength || remembered.has(s)) continue;
    if (remembered.size >= MAX_REMEMBERED_SECRETS) {
      // Forget the oldest; the request's own secrets are always re-added below.
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

export function createResponseScrubber(options: ResponseScrubberOptions): ResponseScrubber {
  const matcher = matcherFor(options.secrets, options.minSecretLength);
  const scrubbed = scrubHeaders(options.headers, {
    patterns: matcher,
    remove: options.removeHeaders,
  });
  const body = createScrubStream({
    patterns: matcher,
    contentEncoding: options.headers['content-encoding'],
  });
  return {
    headers: scrubbed.headers,
    headerRedactions: scrubbed.count,
    body,
    bodyRedactions: () => body.redactions,
  };
}
