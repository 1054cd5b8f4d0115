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

// Compiling the Aho-Corasick automaton is the costly part; the same credential gives the
// same secret set on every request, so automata are cached by their exact secret set.
const MATCHER_CACHE_SIZE = 256;
const matchers = new Map<string, Matcher>();

function matcherFor(secrets: readonly string[], minLength: number): Matcher {
  const usable = secrets.filter((s) => Buffer.byteLength(s) >= minLength);
  const key = JSON.stringify([minLength, [...usable].sort()]);
  let m = matchers.get(key);
  if (m === undefined) {
    m = compileMatcher(secretsFor(usable, { minLength }));
    if (matchers.size >= MATCHER_CACHE_SIZE) {
      const oldest = matchers.keys().next().value;
      if (oldest !== undefined) matchers.delete(oldest);
    }
    matchers.set(key, m);
  }
  return m;
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
