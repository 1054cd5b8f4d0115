/**
 * Verification of a signed request's headers, shared by the proxy pipeline and the
 * Authority's renewal endpoint: repeated security headers refused, the lease and the
 * RFC 9421 signature verified (docs/spec/nexus-v1.md §8, steps before the body), and the
 * restart barrier applied (app/replay-state.ts).
 */
import type { IncomingMessage } from 'node:http';
import { NexusError, verifyRequestSignature, type VerifiedRequest } from '@nexus-proxy/protocol';
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
  const getAuthorityKey = async (header: { kid?: string }) => {
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
