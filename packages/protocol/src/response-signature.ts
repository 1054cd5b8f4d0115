// Signed Nexus responses (spec §10.4): a response Nexus generates carries an RFC 9421
// signature by the Authority key, bound to the request it answers by `wimse-req-nonce`
// (the WIMSE response parameter), so an agent can tell Nexus's own refusals from anything
// an upstream or an on-path party could write. Building the signature base and verifying
// it; the node signs with its Authority key (packages/server), the SDK verifies.

import { verifyContentDigest } from './digest.js';
import { bodyBytes, utf8, type BodyInput } from './encoding.js';
import { NexusError } from './errors.js';
import { importJwk, verifyBytes, type SignatureAlgorithm } from './http-signatures/algorithms.js';
import type { ComponentId } from './http-signatures/components.js';
import { fieldValue, type HeaderInput, type HttpMessage } from './http-signatures/message.js';
import { createSignatureBase, parseSignatures } from './http-signatures/signatures.js';
import type { BareItem, SfParameters } from './structured-fields.js';
import type { Clock } from './lease.js';

/** The label Nexus signs its responses under. */
export const RESPONSE_SIGNATURE_LABEL = 'nexus';
/** The `tag` of a Nexus response signature; verifiers select it by this tag. */
export const RESPONSE_SIGNATURE_TAG = 'nexus-response';
/** `expires - created` of a response signature, seconds. */
export const RESPONSE_SIGNATURE_WINDOW = 60;

const id = (name: string, req = false): ComponentId => ({
  name,
  params: new Map<string, BareItem>(req ? [['req', true]] : []),
});

/**
 * The components a Nexus response signature covers: the status, the request it answers
 * (`@method;req`, `@path;req`, `@query;req`), `Nexus-Request-Id`, and when present
 * `Nexus-Error` and the body (`content-type`, `content-digest`).
 */
export function responseSignatureComponents(headers: HeaderInput): ComponentId[] {
  const out = [id('@status'), id('@method', true), id('@path', true), id('@query', true)];
  out.push(id('nexus-request-id'));
  if (fieldValue(headers, 'nexus-error') !== undefined) out.push(id('nexus-error'));
  if (fieldValue(headers, 'content-digest') !== undefined) {
    out.push(id('content-type'), id('content-digest'));
  }
  return out;
}

/** Parameters of a Nexus response signature, in their serialized order. */
export function responseSignatureParams(p: {
  created: number;
  nonce: string;
  kid: string;
  requestNonce?: string;
}): SfParameters {
  const params: SfParameters = new Map<string, BareItem>([
    ['created', p.created],
    ['expires', p.created + RESPONSE_SIGNATURE_WINDOW],
    ['nonce', p.nonce],
    ['keyid', p.kid],
    ['tag', RESPONSE_SIGNATURE_TAG],
  ]);
  if (p.requestNonce !== undefined) params.set('wimse-req-nonce', p.requestNonce);
  return params;
}

/**
 * The signature base and `@signature-params` of a Nexus response (the signer adds
 * `Signature-Input: nexus=<signatureParams>` and `Signature: nexus=:<sig>:`).
 * `request.url` may be any absolute URL with the request's path and query.
 */
export function responseSignatureBase(
  response: { status: number; headers: HeaderInput },
  request: { method: string; url: string },
  params: SfParameters,
): { base: string; signatureParams: string } {
  return createSignatureBase(
    { status: response.status, headers: response.headers },
    responseSignatureComponents(response.headers),
    params,
    { request: { method: request.method, url: request.url, headers: {} }, code: 'internal_error' },
  );
}

/** Options of {@link verifyResponseSignature}. */
export interface VerifyResponseSignatureOptions {
  status: number;
  headers: HeaderInput;
  body: BodyInput;
  /** The request as the agent sent it (method, absolute URL) and the nonce it signed with. */
  request: { method: string; url: string; nonce: string };
  /** The Authority's public keys (its JWKS `keys`). */
  keys: ReadonlyArray<Record<string, unknown>>;
  now?: Clock;
  /** Clock skew, seconds (default 5). */
  skewSeconds?: number;
}

/**
 * Verifies the Nexus signature of a response: exactly one member tagged `nexus-response`,
 * every component of {@link responseSignatureComponents} covered, `wimse-req-nonce` equal
 * to the request's nonce, within its window, by a key of the Authority JWKS, and a body
 * matching its `Content-Digest`.
 *
 * @returns the `kid` that signed it.
 * @throws NexusError `signature_missing` (unsigned), `signature_invalid`,
 *   `signature_expired`, `digest_invalid`, `digest_mismatch`.
 */
export async function verifyResponseSignature(
  options: VerifyResponseSignatureOptions,
): Promise<{ kid: string }> {
  const bad = (): never => {
    throw new NexusError('signature_invalid');
  };
  const message: HttpMessage = { status: options.status, headers: options.headers };
  const signatures = parseSignatures(message, { rejectDuplicateKeys: true });
  let sig;
  for (const candidate of signatures.values()) {
    if (candidate.params.get('tag') !== RESPONSE_SIGNATURE_TAG) continue;
    if (sig !== undefined) bad();
    sig = candidate;
  }
  if (sig === undefined) throw new NexusError('signature_missing');
  const p = sig.params;
  const created = p.get('created');
  const expires = p.get('expires');
  const kid = p.get('keyid');
  if (typeof created !== 'number' || typeof expires !== 'number' || typeof kid !== 'string') {
    return bad();
  }
  // Bound to this request: a refusal recorded for another request cannot be replayed here.
  if (p.get('wimse-req-nonce') !== options.request.nonce) bad();
  const covered = new Set(
    sig.components.map((c) => `${c.name}${c.params.has('req') ? ';req' : ''}`),
  );
  for (const c of responseSignatureComponents(options.headers)) {
    if (!covered.has(`${c.name}${c.params.has('req') ? ';req' : ''}`)) bad();
  }
  const now = Math.floor((options.now ?? Date.now)() / 1000);
  const skew = options.skewSeconds ?? 5;
  if (!(expires > created) || expires - created > RESPONSE_SIGNATURE_WINDOW) bad();
  if (created > now + skew) bad();
  if (now > expires + skew) throw new NexusError('signature_expired');
  const jwk = options.keys.find((k) => k.kid === kid) ?? bad();
  const algorithm: SignatureAlgorithm =
    jwk.alg === 'EdDSA' ? 'ed25519' : jwk.alg === 'ES256' ? 'ecdsa-p256-sha256' : bad();
  const { base } = createSignatureBase(message, sig.components, p, {
    request: { method: options.request.method, url: options.request.url, headers: {} },
  });
  let key;
  try {
    key = await importJwk(jwk as Parameters<typeof importJwk>[0], algorithm, 'verify');
  } catch {
    return bad();
  }
  if (!(await verifyBytes(algorithm, key, utf8(base), sig.signature))) bad();
  const digest = fieldValue(options.headers, 'content-digest');
  const bytes = bodyBytes(options.body);
  if (digest === undefined ? bytes.length > 0 : false) bad();
  if (digest !== undefined) await verifyContentDigest(digest, bytes);
  return { kid };
}
