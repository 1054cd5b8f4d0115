/**
 * Verification of a signed request's headers, shared by the proxy pipeline and the
 * Authority's renewal endpoint: repeated security headers refused, the lease and the
 * RFC 9421 signature verified (docs/spec/nexus-v1.md §8, steps before the body), and the
 * restart barrier applied (app/replay-state.ts).
 */
import { KeyObject, verify, type VerifyKeyObjectInput } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  NexusError,
  verifyRequestSignature,
  webCryptoVerify,
  type AgentSignatureAlgorithm,
  type CryptoKey,
  type SignatureVerifyFunction,
  type VerifiedRequest,
} from '@nexus-proxy/protocol';
import type { Authority } from '../authority/authority.js';

/**
 * Security-relevant headers must arrive once. Node keeps the first of some duplicated
 * headers and joins others; either way the signer and the proxy could read different
 * values, so duplicates are refused outright.
 */
const SINGLE_HEADERS = [
  'workload-identity-token',
  'signature',
  'signature-input',
  'nexus-intent',
  'content-digest',
  'content-type',
  'content-length',
  'transfer-encoding',
  'host',
];

/** The node:crypto form of each imported agent key (one per lease: the lease cache holds it). */
const keyObjects = new WeakMap<
  CryptoKey,
  { algorithm: AgentSignatureAlgorithm; key: KeyObject | VerifyKeyObjectInput }
>();

/**
 * The agent signature check with node:crypto's async one-shot `verify` (on the libuv
 * threadpool, as WebCrypto's is): the same OpenSSL verification without WebCrypto's
 * per-call algorithm normalisation and copies (issue 14 step 2).
 *
 * MUST: the verdict of WebCrypto's `verify` for the same arguments. A key WebCrypto would
 * not verify with for `algorithm` (another type, usage or curve) goes to WebCrypto, which
 * refuses it; a cached key object serves only the algorithm it was checked for (an EC key
 * given with `ed25519` would otherwise verify with OpenSSL's default digest).
 */
export const nodeSignatureVerify: SignatureVerifyFunction = (algorithm, key, base, signature) => {
  let cached = keyObjects.get(key);
  if (cached === undefined) {
    const a = key.algorithm as { name: string; namedCurve?: string };
    const fits =
      key.type === 'public' &&
      key.usages.includes('verify') &&
      (algorithm === 'ed25519'
        ? a.name === 'Ed25519'
        : a.name === 'ECDSA' && a.namedCurve === 'P-256');
    if (!fits) return webCryptoVerify(algorithm, key, base, signature);
    // ECDSA signatures are raw r || s (RFC 9421 §3.3.4), as WebCrypto takes them.
    const from = KeyObject.from(key);
    cached = {
      algorithm,
      key: algorithm === 'ed25519' ? from : { key: from, dsaEncoding: 'ieee-p1363' },
    };
    keyObjects.set(key, cached);
  } else if (cached.algorithm !== algorithm) {
    return webCryptoVerify(algorithm, key, base, signature);
  }
  // Both algorithms' signatures are 64 bytes; anything else is refused unread.
  if (signature.length !== 64) return Promise.resolve(false);
  const hash = algorithm === 'ed25519' ? null : 'sha256';
  const keyInput = cached.key;
  return new Promise((resolve) => {
    try {
      verify(hash, Buffer.from(base, 'utf8'), keyInput, signature, (err, ok) =>
        resolve(!err && ok === true),
      );
    } catch {
      resolve(false);
    }
  });
};

export interface RequestVerifierOptions {
  readonly authority: Authority;
  /** Public base URL of this listener: the signature's `wimse-aud` is built on it. */
  readonly publicUrl: string;
  readonly issuer: string;
  readonly audience: string;
  readonly signatureSkewSeconds: number;
  readonly leaseSkewSeconds: number;
  readonly clock: () => number;
  /** Signatures that could predate this time (ms) are refused; 0: none. */
  readonly notBefore: number;
}

/** Returns a function that verifies a request's lease and signature, or throws a NexusError. */
export function createRequestVerifier(
  options: RequestVerifierOptions,
): (req: IncomingMessage) => Promise<VerifiedRequest> {
  const { authority } = options;
  // Synchronous: a lease cache hit then costs no microtask.
  const getAuthorityKey = (header: { kid?: string }) => {
    const key = authority.keys.publicKey(header.kid);
    if (key === undefined) throw new NexusError('lease_invalid');
    return key;
  };
  const isRevoked = (claims: VerifiedRequest['claims']) => authority.isRevoked(claims);
  const barrier = options.notBefore + options.signatureSkewSeconds * 1000;

  return async (req) => {
    const distinct = req.headersDistinct;
    for (const name of SINGLE_HEADERS) {
      const values = distinct[name];
      if (values !== undefined && values.length > 1) throw new NexusError('request_invalid');
    }
    const verified = await verifyRequestSignature({
      method: req.method ?? 'GET',
      url: options.publicUrl + (req.url ?? ''),
      headers: req.headers,
      issuer: options.issuer,
      audience: options.audience,
      getAuthorityKey,
      isRevoked,
      now: options.clock,
      skewSeconds: options.signatureSkewSeconds,
      leaseSkewSeconds: options.leaseSkewSeconds,
      verifySignature: nodeSignatureVerify,
    });
    if (options.notBefore > 0 && verified.created * 1000 <= barrier) {
      // Possibly signed before this process started (allowing for the signer's clock
      // skew): its nonce may have been used with the previous process, whose replay cache
      // is gone. The signer re-signs (the SDK does so by itself).
      throw new NexusError('signature_expired');
    }
    return verified;
  };
}
