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
  return randomBytes(bytes).toString('base64url');
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
