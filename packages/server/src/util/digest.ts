// The Content-Digest hash the server verifies request bodies with.
import { createHash } from 'node:crypto';
import { webCryptoDigest, type DigestFunction } from '@nexus-proxy/protocol';

/** Bodies up to this size are hashed synchronously on the calling thread. */
const SYNC_LIMIT = 64 * 1024;

/**
 * `node:crypto` for small bodies: a WebCrypto digest of 1 KiB costs ~45 us of main-thread
 * time for the job's dispatch and ~90 us of CPU in all, `createHash` ~5 us. Larger bodies
 * (up to the 10 MiB limit, tens of milliseconds to hash) go to WebCrypto, which hashes
 * on the libuv threadpool instead of blocking every other request.
 */
export const serverDigest: DigestFunction = (alg, body) => {
  if (body.length > SYNC_LIMIT) return webCryptoDigest(alg, body);
  return createHash(alg === 'sha-256' ? 'sha256' : 'sha512')
    .update(body)
    .digest();
};
