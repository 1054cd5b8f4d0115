// Random identifiers and hashing helpers shared by the server modules.
import { createHash, randomBytes } from 'node:crypto';

/**
 * A random identifier: `bytes` bytes from the CSPRNG, base64url without padding.
 * The default 16 bytes (128 bits) is enough for lease ids (`jti`), enrollment and
 * operator token ids.
 *
 * @example
 * const jti = randomId(); // e.g. "hZ0m1q2F3x9yJb0w8bVvZg"
 */
export function randomId(bytes = 16): string {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) {
    throw new RangeError('randomId: bytes must be an integer between 1 and 1024');
  }
  return takeRandom(bytes).toString('base64url');
}

// CSPRNG bytes are drawn 4 KiB at a time and handed out once each, as `crypto.randomUUID`
// does: one `randomBytes` call per id (every proxied request takes one) cost more than
// the rest of the id's work.
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolOffset = 0;

function takeRandom(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    pool = randomBytes(Math.max(POOL_BYTES, n));
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}

/**
 * SHA-256 of a UTF-8 string or raw bytes, as lowercase hex. Used to store tokens
 * hashed at rest (enrollment and operator tokens).
 */
export function sha256Hex(input: string | Uint8Array): string {
  const hash = createHash('sha256');
  if (typeof input === 'string') hash.update(input, 'utf8');
  else hash.update(input);
  return hash.digest('hex');
}
