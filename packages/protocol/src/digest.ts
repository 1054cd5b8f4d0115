// RFC 9530 Content-Digest: create and verify with sha-256 / sha-512 only (Nexus v1,
// [DIGEST-ALG]); any other algorithm is ignored, and a header with none allowed is invalid.

import {
  base64Decode,
  bodyBytes,
  bytesEqual,
  bufferSource,
  subtle,
  type BodyInput,
} from './encoding.js';
import { NexusError } from './errors.js';
import { parseDictionary, serializeByteSequence } from './structured-fields.js';

/** The digest algorithms Nexus accepts. */
export type DigestAlgorithm = 'sha-256' | 'sha-512';

/** The digest algorithms Nexus accepts, in preference order. */
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = Object.freeze(['sha-256', 'sha-512']);

const HASH: Record<DigestAlgorithm, string> = { 'sha-256': 'SHA-256', 'sha-512': 'SHA-512' };

/**
 * Computes a digest. The default is WebCrypto (portable, off the main thread in Node); a
 * server may pass a synchronous one (e.g. `node:crypto`'s `createHash`), which for small
 * bodies costs a fraction of a WebCrypto job's dispatch.
 */
export type DigestFunction = (
  alg: DigestAlgorithm,
  body: Uint8Array,
) => Uint8Array | Promise<Uint8Array>;

/** WebCrypto digest, the default {@link DigestFunction}. */
export async function webCryptoDigest(alg: DigestAlgorithm, body: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest(HASH[alg], bufferSource(body)));
}

/**
 * Returns a Content-Digest field value for `body`, e.g. `sha-256=:X48E...=:`.
 *
 * @example
 * headers['content-digest'] = await createContentDigest('{"hello": "world"}');
 */
export async function createContentDigest(
  body: BodyInput,
  alg: DigestAlgorithm = 'sha-256',
): Promise<string> {
  if (!(alg in HASH)) throw new NexusError('digest_invalid');
  return `${alg}=${serializeByteSequence(await webCryptoDigest(alg, bodyBytes(body)))}`;
}

/**
 * Verifies a Content-Digest field value against `body`. Every sha-256 / sha-512 member
 * MUST match; other algorithms are ignored.
 *
 * @throws NexusError `digest_invalid` (malformed, or no allowed algorithm),
 *   `digest_mismatch` (a value does not match the body).
 * @returns the algorithms that were checked.
 */
export async function verifyContentDigest(
  headerValue: string,
  body: BodyInput,
  digest: DigestFunction = webCryptoDigest,
): Promise<DigestAlgorithm[]> {
  const simple = parseSimpleContentDigest(headerValue);
  const checks: Array<[DigestAlgorithm, Uint8Array]> = simple !== undefined ? [simple] : [];
  if (simple === undefined) {
    const dict = parseDictionary(headerValue, { code: 'digest_invalid' });
    for (const [key, member] of dict) {
      if (key !== 'sha-256' && key !== 'sha-512') continue;
      if (member.kind !== 'item' || !(member.value instanceof Uint8Array)) {
        throw new NexusError('digest_invalid');
      }
      checks.push([key, member.value]);
    }
  }
  if (checks.length === 0) throw new NexusError('digest_invalid');
  const bytes = bodyBytes(body);
  for (const [alg, expected] of checks) {
    // A synchronous digest function is not awaited (no microtask per request).
    const computed = digest(alg, bytes);
    const actual = computed instanceof Uint8Array ? computed : await computed;
    // Digests are not secret, but the comparison is constant-time anyway.
    if (!bytesEqual(actual, expected)) throw new NexusError('digest_mismatch');
  }
  return checks.map(([alg]) => alg);
}

const SIMPLE_DIGEST_RE = /^(sha-256|sha-512)=:([A-Za-z0-9+/=]*):$/;

/**
 * The one `sha-256` or `sha-512` member of a Content-Digest value in the shape signers
 * write (`sha-256=:base64:`, nothing else), read without the dictionary parser; undefined
 * for anything else, which the strict parser then reads (same result, issue 14 step 2).
 */
export function parseSimpleContentDigest(value: string): [DigestAlgorithm, Uint8Array] | undefined {
  const m = SIMPLE_DIGEST_RE.exec(value);
  if (m === null) return undefined;
  const bytes = base64Decode(m[2]!);
  return bytes === undefined ? undefined : [m[1] as DigestAlgorithm, bytes];
}
