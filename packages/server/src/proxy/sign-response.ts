/**
 * Signs the responses Nexus sends (spec §10.4): an RFC 9421 signature by the Authority's
 * active key, tagged `nexus-response`, covering the status, the request it answers
 * (`@method;req`, `@path;req`, `@query;req`) and `Nexus-Request-Id`, bound to the request by
 * `wimse-req-nonce`. A refusal also covers `Nexus-Error` and its body by `Content-Digest`;
 * a relayed upstream answer covers `Nexus-Origin: upstream` and its `Content-Type`, not its
 * streamed body. An agent (the SDK) then never acts on a "Nexus" refusal that Nexus did not
 * make, and can tell an upstream's answer relayed by Nexus from anything else.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  NexusError,
  NEXUS_ORIGIN_FIELD,
  RESPONSE_SIGNATURE_LABEL,
  RESPONSE_SIGNATURE_TAG,
  SIGNATURE_TAG,
  parseDictionary,
  parseSignatures,
  relayedResponseSignatureBase,
  responseSignatureBase,
  responseSignatureParams,
  serializeByteSequence,
} from '@nexus-proxy/protocol';
import { randomId } from '../util/ids.js';

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
  headers['content-digest'] =
    `sha-256=:${createHash('sha256').update(body, 'utf8').digest('base64')}:`;
  const covered: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) covered[k] = String(v);
  const fields = signatureFields(signer, req.method, req.url, status, covered, requestNonce(req));
  if (fields === undefined) {
    // A request target the signature base cannot carry: answered unsigned.
    delete headers['content-digest'];
    return;
  }
  headers['signature-input'] = fields.input;
  headers['signature'] = fields.signature;
}

/**
 * Marks a relayed upstream answer as such and signs it (spec §10.4), in `headers` (the
 * scrubbed upstream fields, about to be written): sets `Nexus-Origin: upstream`, and adds
 * Nexus's `Signature-Input` and `Signature` members labelled `nexus` after any of the
 * upstream's own. The signature covers the status, the request, `Nexus-Request-Id`,
 * `Nexus-Origin` and the upstream's `Content-Type` when it has one; nothing of the body (it
 * is streamed after the head). One signature per response, with the nonce the pipeline
 * already verified (no re-parsing of the request's fields).
 *
 * The signature is made here, synchronously (an Ed25519 signature is ~30 us on the bench
 * machine): as a libuv threadpool job it cost the main thread as much in dispatch, promise
 * and wake-up, and at 500 req/s it cost more CPU per request and a higher p50 (docs/
 * performance.md, optimisation 20). The caller writes the head after it returns.
 *
 * @throws NexusError `internal_error` when a signer is installed and the answer cannot be
 *   signed (MUST fail closed: the caller answers with a problem, never with an unsigned
 *   relayed answer). Without a signer, only `Nexus-Origin` is set.
 */
export function signRelayedHeaders(
  req: IncomingMessage,
  status: number,
  headers: Record<string, string | string[]>,
  requestId: string,
  requestNonce: string,
): void {
  headers[NEXUS_ORIGIN_FIELD] = 'upstream';
  const s = signer;
  if (s === undefined) return;
  let fields: { input: string; signature: string };
  try {
    const key = prepared(s.key());
    const ct = headers['content-type'];
    const { base, signatureParams } = relayedResponseSignatureBase({
      status,
      method: req.method ?? '',
      target: req.url ?? '',
      requestId,
      contentType: ct === undefined ? undefined : typeof ct === 'string' ? ct : ct.join(', '),
      created: Math.floor(s.clock() / 1000),
      nonce: randomId(16),
      kid: key.kid,
      requestNonce,
    });
    const signature = sign(key.algorithm, Buffer.from(base, 'utf8'), key.options);
    fields = {
      input: `${RESPONSE_SIGNATURE_LABEL}=${signatureParams}`,
      signature: `${RESPONSE_SIGNATURE_LABEL}=:${signature.toString('base64')}:`,
    };
  } catch (err) {
    throw new NexusError('internal_error', undefined, { cause: err });
  }
  // An upstream's own signature fields stay, unless they could be taken for Nexus's (a
  // member labelled `nexus` or tagged `nexus-response`, or fields that do not parse): then
  // both go, so that every verifier sees exactly one Nexus signature, the proxy's.
  if (posesAsNexus(headers['signature-input']) || posesAsNexus(headers['signature'])) {
    delete headers['signature-input'];
    delete headers['signature'];
  }
  headers['signature-input'] = appendLine(headers['signature-input'], fields.input);
  headers['signature'] = appendLine(headers['signature'], fields.signature);
}

/** The active key with what signing needs, kept while the key stays active (both signers). */
interface PreparedKey {
  readonly source: ResponseSigningKey;
  readonly kid: string;
  readonly algorithm: 'sha256' | null;
  readonly options: { key: KeyObject; dsaEncoding: 'ieee-p1363' };
}
let preparedKey: PreparedKey | undefined;

function prepared(key: ResponseSigningKey): PreparedKey {
  if (preparedKey?.source !== key) {
    preparedKey = {
      source: key,
      kid: key.kid,
      algorithm: key.alg === 'EdDSA' ? null : 'sha256',
      options: { key: key.privateKey, dsaEncoding: 'ieee-p1363' },
    };
  }
  return preparedKey;
}

function posesAsNexus(field: string | string[] | undefined): boolean {
  if (field === undefined) return false;
  try {
    const dict = parseDictionary(typeof field === 'string' ? field : field.join(', '));
    for (const [label, member] of dict) {
      if (label === RESPONSE_SIGNATURE_LABEL) return true;
      if (member.params.get('tag') === RESPONSE_SIGNATURE_TAG) return true;
    }
    return false;
  } catch {
    return true;
  }
}

function appendLine(existing: string | string[] | undefined, line: string): string | string[] {
  if (existing === undefined) return line;
  return [...(typeof existing === 'string' ? [existing] : existing), line];
}

/** The `nexus` members of `Signature-Input` and `Signature`; undefined when unsignable. */
function signatureFields(
  s: ResponseSigner,
  method: string,
  url: string,
  status: number,
  covered: Record<string, string>,
  requestNonce: string | undefined,
): { input: string; signature: string } | undefined {
  try {
    const key = prepared(s.key());
    const params = responseSignatureParams({
      created: Math.floor(s.clock() / 1000),
      nonce: randomId(16),
      kid: key.kid,
      requestNonce,
    });
    // Only the path and query of the URL are covered (@path;req, @query;req): the origin
    // is a placeholder, not the Host the client sent.
    const { base, signatureParams } = responseSignatureBase(
      { status, headers: covered },
      { method, url: `https://nexus.invalid${url}` },
      params,
    );
    const signature = sign(key.algorithm, Buffer.from(base, 'utf8'), key.options);
    return {
      input: `${RESPONSE_SIGNATURE_LABEL}=${signatureParams}`,
      signature: `${RESPONSE_SIGNATURE_LABEL}=${serializeByteSequence(new Uint8Array(signature))}`,
    };
  } catch {
    return undefined;
  }
}
