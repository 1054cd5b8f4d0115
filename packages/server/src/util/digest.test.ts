// serverDigest: the Content-Digest hash the proxy verifies bodies with. A large body goes
// to WebCrypto as a view of the request's buffer (issue 14 step 5): only the view's bytes
// may be hashed, never the rest of the memory it sits in.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { serverDigest } from './digest.js';

const hash = (alg: string, b: Uint8Array) => createHash(alg).update(b).digest();

describe('serverDigest', () => {
  it('hashes exactly the bytes of a view, small (synchronous) or large (WebCrypto)', async () => {
    for (const size of [0, 1000, 64 * 1024, 64 * 1024 + 1, 1024 * 1024]) {
      // The body sits inside a larger buffer, with other bytes on both sides.
      const memory = Buffer.alloc(size + 64, 0x41);
      memory.fill(0x7a, 0, 32);
      memory.fill(0x7a, 32 + size);
      const body = memory.subarray(32, 32 + size);
      expect(Buffer.from(await serverDigest('sha-256', body)), `sha-256 ${size}`).toEqual(
        hash('sha256', body),
      );
      expect(Buffer.from(await serverDigest('sha-512', body)), `sha-512 ${size}`).toEqual(
        hash('sha512', body),
      );
    }
  });

  it('answers the body as it was when asked: a later change of the buffer does not count', async () => {
    const body = Buffer.alloc(256 * 1024, 0x61);
    const pending = serverDigest('sha-256', body);
    const want = hash('sha256', body);
    body.fill(0x62);
    expect(Buffer.from(await pending)).toEqual(want);
  });
});
