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
/**
 * The field a proxy sets on a relayed upstream answer (value `upstream`, spec §10.4), signed
 * with it: the answer came from the upstream, through Nexus, for this request.
 */
export const NEXUS_ORIGIN_FIELD = 'nexus-origin';

const id = (name: string, req = false): ComponentId => ({
  name,
  params: new Map<string, BareItem>(req ? [['req', true]] : []),
});

/**
 * The components a Nexus response signature covers: the status, the request it answers
 * (`@method;req`, `@path;req`, `@query;req`), `Nexus-Request-Id`, and when present
 * `Nexus-Error`, `Nexus-Origin` and the body (`content-type`, `content-digest`). A relayed
 * answer (`Nexus-Origin`, no `Content-Digest`: its body is streamed) covers its
 * `content-type` when it has one, never its body.
 */
export function responseSignatureComponents(headers: HeaderInput): ComponentId[] {
  const out = [id('@status'), id('@method', true), id('@path', true), id('@query', true)];
  out.push(id('nexus-request-id'));
  if (fieldValue(headers, 'nexus-error') !== undefined) out.push(id('nexus-error'));
  const relayed = fieldValue(headers, NEXUS_ORIGIN_FIELD) !== undefined;
  if (relayed) out.push(id(NEXUS_ORIGIN_FIELD));
  if (fieldValue(headers, 'content-digest') !== undefined) {
    out.push(id('content-type'), id('content-digest'));
  } else if (relayed && fieldValue(headers, 'content-type') !== undefined) {
    out.push(id('content-type'));
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

/** What the signature of a relayed upstream answer covers (spec §10.4 [RESP-RELAYED]). */
export interface RelayedSignatureInput {
  readonly status: number;
  readonly method: string;
  /** The request target as the proxy received it: origin-form path and query (`/a/b?x=1`). */
  readonly target: string;
  readonly requestId: string;
  /** The relayed answer's `Content-Type` (lines joined with `, `), when it has one. */
  readonly contentType: string | undefined;
  readonly created: number;
  readonly nonce: string;
  readonly kid: string;
  /** The nonce of the request's verified signature. */
  readonly requestNonce: string | undefined;
}

/**
 * The signature base and `@signature-params` of a relayed upstream answer: exactly
 * {@link responseSignatureBase} over `Nexus-Request-Id`, `Nexus-Origin: upstream` and the
 * `Content-Type`, built by concatenation when every value is in the plain shape the proxy
 * writes (the generic path otherwise, which gives the same text or throws).
 *
 * @throws NexusError `internal_error` when the base cannot be built (a target that is not
 *   origin-form, a value that would inject a line).
 */
export function relayedResponseSignatureBase(p: RelayedSignatureInput): {
  base: string;
  signatureParams: string;
} {
  return fastRelayedSignatureBase(p) ?? genericRelayedSignatureBase(p);
}

/** The generic (parse and serialise) path of {@link relayedResponseSignatureBase}. */
export function genericRelayedSignatureBase(p: RelayedSignatureInput): {
  base: string;
  signatureParams: string;
} {
  // Only the path and query are covered (@path;req, @query;req): the origin is a
  // placeholder, not the Host the client sent; a target that is not origin-form would
  // turn into part of it.
  if (!p.target.startsWith('/')) throw new NexusError('internal_error');
  const headers: Record<string, string> = {
    'nexus-request-id': p.requestId,
    [NEXUS_ORIGIN_FIELD]: 'upstream',
  };
  if (p.contentType !== undefined) headers['content-type'] = p.contentType;
  return responseSignatureBase(
    { status: p.status, headers },
    { method: p.method, url: `https://nexus.invalid${p.target}` },
    responseSignatureParams(p),
  );
}

// An sf-string without escapes (serialises to `"<text>"`); an origin-form target of
// visible ASCII without a fragment; a field line that trimOWS leaves as it is and that
// cannot inject a line; a canonical sf-integer range.
const PLAIN_SF_STRING_RE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const PLAIN_TARGET_RE = /^\/[\x21\x22\x24-\x7e]*$/;
const PLAIN_LINE_RE = /^(?:[^\r\n \t](?:[^\r\n]*[^\r\n \t])?)?$/;
const NO_LINE_BREAK_RE = /^[^\r\n]+$/;
const MAX_SF_INTEGER = 999_999_999_999_999;
const RELAYED_COMPONENTS =
  '"@status" "@method";req "@path";req "@query";req "nexus-request-id" "nexus-origin"';

/**
 * The fast path of {@link relayedResponseSignatureBase}: the base by concatenation for the
 * fixed shape of a relayed answer, or undefined for any input outside that plain shape.
 *
 * MUST: whenever it returns a base, that base and `@signature-params` are exactly those of
 * {@link genericRelayedSignatureBase} for the same input (test/fuzz checks both).
 */
export function fastRelayedSignatureBase(
  p: RelayedSignatureInput,
): { base: string; signatureParams: string } | undefined {
  if (!Number.isInteger(p.status) || p.status < 100 || p.status > 999) return undefined;
  if (!NO_LINE_BREAK_RE.test(p.method) || !PLAIN_TARGET_RE.test(p.target)) return undefined;
  if (!PLAIN_LINE_RE.test(p.requestId)) return undefined;
  if (p.contentType !== undefined && !PLAIN_LINE_RE.test(p.contentType)) return undefined;
  if (!Number.isSafeInteger(p.created) || p.created < 0) return undefined;
  if (p.created + RESPONSE_SIGNATURE_WINDOW > MAX_SF_INTEGER) return undefined;
  if (!PLAIN_SF_STRING_RE.test(p.nonce) || !PLAIN_SF_STRING_RE.test(p.kid)) return undefined;
  if (p.requestNonce !== undefined && !PLAIN_SF_STRING_RE.test(p.requestNonce)) return undefined;
  const q = p.target.indexOf('?');
  const path = q === -1 ? p.target : p.target.slice(0, q);
  const query = q === -1 ? '' : p.target.slice(q + 1);
  const signatureParams =
    `(${RELAYED_COMPONENTS}${p.contentType === undefined ? '' : ' "content-type"'})` +
    `;created=${p.created};expires=${p.created + RESPONSE_SIGNATURE_WINDOW}` +
    `;nonce="${p.nonce}";keyid="${p.kid}";tag="${RESPONSE_SIGNATURE_TAG}"` +
    (p.requestNonce === undefined ? '' : `;wimse-req-nonce="${p.requestNonce}"`);
  const base =
    `"@status": ${p.status}\n"@method";req: ${p.method}\n"@path";req: ${path}\n` +
    `"@query";req: ?${query}\n"nexus-request-id": ${p.requestId}\n` +
    `"nexus-origin": upstream\n` +
    (p.contentType === undefined ? '' : `"content-type": ${p.contentType}\n`) +
    `"@signature-params": ${signatureParams}`;
  return { base, signatureParams };
}

/** Options of {@link verifyResponseSignature}. */
export interface VerifyResponseSignatureOptions {
  status: number;
  headers: HeaderInput;
  /** The body of a refusal (its `Content-Digest` is checked); unused for a relayed answer. */
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

/** Options of {@link verifyRelayedResponseSignature}: those of a refusal, without a body. */
export type VerifyRelayedResponseOptions = Omit<VerifyResponseSignatureOptions, 'body'>;

/**
 * Verifies the Nexus signature of a relayed upstream answer (spec §10.4): as
 * {@link verifyResponseSignature}, and the response carries `Nexus-Origin: upstream` and no
 * `Nexus-Error`. The body is not covered (the proxy streams it): what the signature proves
 * is that Nexus relayed this status and these covered fields from the service's upstream,
 * in answer to this request.
 *
 * @returns the `kid` that signed it.
 * @throws NexusError `signature_missing`, `signature_invalid`, `signature_expired`.
 */
export async function verifyRelayedResponseSignature(
  options: VerifyRelayedResponseOptions,
): Promise<{ kid: string }> {
  const origin = fieldValue(options.headers, NEXUS_ORIGIN_FIELD);
  const digest = fieldValue(options.headers, 'content-digest');
  if (origin === undefined && fieldValue(options.headers, 'signature') === undefined) {
    throw new NexusError('signature_missing');
  }
  if (origin !== 'upstream' || fieldValue(options.headers, 'nexus-error') !== undefined) {
    throw new NexusError('signature_invalid');
  }
  // A relayed answer's Content-Digest, if any, is the upstream's and is not covered.
  const headers =
    digest === undefined ? options.headers : withoutField(options.headers, 'content-digest');
  return verifyResponseSignature({ ...options, headers, body: new Uint8Array(0) });
}

function withoutField(headers: HeaderInput, name: string): HeaderInput {
  const pairs: Array<[string, string]> = [];
  if (Array.isArray(headers)) {
    for (const [k, v] of headers as ReadonlyArray<readonly [string, string]>) pairs.push([k, v]);
  } else {
    const rec = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
    for (const [k, v] of Object.entries(rec)) {
      if (v === undefined) continue;
      for (const line of typeof v === 'string' ? [v] : v) pairs.push([k, line]);
    }
  }
  return pairs.filter(([k]) => k.toLowerCase() !== name);
}
