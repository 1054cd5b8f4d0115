/**
 * Signs the responses Nexus generates (spec §10.4): an RFC 9421 signature by the
 * Authority's active key, tagged `nexus-response`, covering the status, the request it
 * answers (`@method;req`, `@path;req`, `@query;req`), `Nexus-Request-Id`, `Nexus-Error` and
 * the body by its `Content-Digest`, bound to the request by `wimse-req-nonce`. An agent
 * (the SDK) then never acts on a "Nexus" refusal that Nexus did not make.
 */
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  RESPONSE_SIGNATURE_LABEL,
  SIGNATURE_TAG,
  parseSignatures,
  responseSignatureBase,
  responseSignatureParams,
  serializeByteSequence,
} from '@nexus-proxy/protocol';

/** The key a node signs its responses with: the Authority's active lease-signing key. */
export interface ResponseSigningKey {
  readonly kid: string;
  readonly alg: 'EdDSA' | 'ES256';
  readonly privateKey: KeyObject;
}

export interface ResponseSigner {
  readonly key: () => ResponseSigningKey;
  readonly clock: () => number;
}

// One node per process (`nexus up`): the signer is installed once at start, and every
// problem response of that process is signed with it.
let signer: ResponseSigner | undefined;

/** Installs (or, with undefined, removes) the signer used by {@link signProblemHeaders}. */
export function installResponseSigner(value: ResponseSigner | undefined): void {
  signer = value;
}

/** The nonce of the request's WIMSE signature, read without verifying it (best effort). */
function requestNonce(req: IncomingMessage): string | undefined {
  try {
    for (const s of parseSignatures({ headers: req.headers }).values()) {
      const nonce = s.params.get('nonce');
      if (s.params.get('tag') === SIGNATURE_TAG && typeof nonce === 'string') return nonce;
    }
  } catch {
    // no or malformed signature: the response is signed without wimse-req-nonce
  }
  return undefined;
}

/**
 * Adds `Content-Digest`, `Signature-Input` and `Signature` to the headers of a problem
 * response about to be written. Without an installed signer, or when the request cannot
 * be described (no method or target), the response stays unsigned: a client that expects
 * signatures then treats it as unverified, never as a refusal by Nexus.
 */
export function signProblemHeaders(
  req: IncomingMessage | undefined,
  status: number,
  headers: Record<string, string | number>,
  body: string,
): void {
  if (signer === undefined || req?.method === undefined || req.url?.startsWith('/') !== true) {
    return;
  }
  try {
    const key = signer.key();
    headers['content-digest'] =
      `sha-256=:${createHash('sha256').update(body, 'utf8').digest('base64')}:`;
    const stringHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) stringHeaders[k] = String(v);
    const params = responseSignatureParams({
      created: Math.floor(signer.clock() / 1000),
      nonce: randomBytes(16).toString('base64url'),
      kid: key.kid,
      requestNonce: requestNonce(req),
    });
    // Only the path and query of the URL are covered (@path;req, @query;req): the origin
    // is a placeholder, not the Host the client sent.
    const { base, signatureParams } = responseSignatureBase(
      { status, headers: stringHeaders },
      { method: req.method, url: `https://nexus.invalid${req.url}` },
      params,
    );
    const signature = sign(key.alg === 'EdDSA' ? null : 'sha256', Buffer.from(base, 'utf8'), {
      key: key.privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    headers['signature-input'] = `${RESPONSE_SIGNATURE_LABEL}=${signatureParams}`;
    headers['signature'] =
      `${RESPONSE_SIGNATURE_LABEL}=${serializeByteSequence(new Uint8Array(signature))}`;
  } catch {
    // A request target the signature base cannot carry: answered unsigned.
    delete headers['content-digest'];
    delete headers['signature-input'];
    delete headers['signature'];
  }
}
