// The Content-Digest hash the server verifies request bodies with.
import { createHash, webcrypto } from 'node:crypto';
import type { DigestFunction } from '@nexus-proxy/protocol';

/** Bodies up to this size are hashed synchronously on the calling thread. */
const SYNC_LIMIT = 64 * 1024;

const WEBCRYPTO_HASH = { 'sha-256': 'SHA-256', 'sha-512': 'SHA-512' } as const;

/**
 * `node:crypto` for small bodies: a WebCrypto digest of 1 KiB costs ~45 us of main-thread
 * time for the job's dispatch and ~90 us of CPU in all, `createHash` ~5 us. Larger bodies
 * (up to the 10 MiB limit, tens of milliseconds to hash) go to WebCrypto, which hashes
 * on the libuv threadpool instead of blocking every other request.
 *
 * A large body goes to WebCrypto as it is (a view of the request's buffer), not first
 * copied into a fresh ArrayBuffer as the protocol package's portable `webCryptoDigest`
 * does: Node copies the bytes for the job already (issue 14 step 5: the extra copy was
 * ~0.2 ms of main-thread time per MiB). Hashing the chunks on the main thread as they
 * arrive was measured too and costs ~3 ms more of main-thread time per MiB (a saturated
 * proxy's bound) for ~0.4 ms less CPU in all: not done.
 */
export const serverDigest: DigestFunction = (alg, body) => {
  if (body.length > SYNC_LIMIT) {
    return webcrypto.subtle
      .digest(WEBCRYPTO_HASH[alg], body as Uint8Array<ArrayBuffer>)
      .then((d) => new Uint8Array(d));
  }
  return createHash(alg === 'sha-256' ? 'sha256' : 'sha512')
    .update(body)
    .digest();
};
