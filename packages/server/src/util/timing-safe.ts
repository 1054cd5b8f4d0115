// Constant-time comparison of secrets (tokens, hashes, MACs). Every place that compares
// a secret-derived value MUST go through this helper, never `===`.
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/**
 * Compares two strings in time independent of where they differ.
 *
 * Both inputs are hashed to 32 bytes first, so the comparison does not leak the length
 * of either input through `crypto.timingSafeEqual` (which requires equal lengths).
 *
 * @example
 * if (!timingSafeEqualString(presentedHash, row.tokenHash)) throw unauthorized();
 */
export function timingSafeEqualString(a: string, b: string): boolean {
  // MUST NOT short-circuit on length: compare fixed-size digests, then confirm equality.
  const equalDigests = timingSafeEqual(digest(a), digest(b));
  return equalDigests && a.length === b.length;
}
