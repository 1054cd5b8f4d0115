// Runs one language-neutral conformance vector (vectors/**.json) against this
// implementation. Pure: the caller reads the files. Used by scripts/conformance.mjs and
// the vitest suite, and usable by anyone checking another build of the protocol.

import { importJWK, type JWK, type ProtectedHeaderParameters } from 'jose';
import { base64Decode } from './encoding.js';
import { createContentDigest, verifyContentDigest, type DigestAlgorithm } from './digest.js';
import { isNexusError, NexusError } from './errors.js';
import {
  importJwk,
  isSignatureAlgorithm,
  type SignatureAlgorithm,
} from './http-signatures/algorithms.js';
import type { HttpMessage } from './http-signatures/message.js';
import {
  createSignatureBase,
  parseSignatures,
  signMessage,
  verifyMessage,
} from './http-signatures/signatures.js';
import type { LeaseClaims } from './lease.js';
import { verifyRequest, type SignatureProfile } from './profile.js';
import { checkDelegatedRequest, narrowDelegation, type DelegationRequest } from './delegation.js';
import { verifyRelayedResponseSignature, verifyResponseSignature } from './response-signature.js';
import { serializeByteSequence } from './structured-fields.js';

/** A vector's expected outcome. */
export interface VectorExpectation {
  verdict: 'accept' | 'reject';
  code?: string;
  signature_base?: string;
  resign?: boolean;
}

/** The outcome of one vector. */
export interface VectorResult {
  id: string;
  passed: boolean;
  /** Why it failed (empty when passed). */
  detail: string;
}

interface VectorMessage {
  method?: string;
  url?: string;
  status?: number;
  headers: Array<[string, string]> | Record<string, string>;
  body_base64?: string;
}

const toMessage = (m: VectorMessage): HttpMessage => ({
  method: m.method,
  url: m.url,
  status: m.status,
  headers: m.headers,
});

const bodyOf = (b64: string | undefined): Uint8Array =>
  b64 === undefined ? new Uint8Array(0) : (base64Decode(b64) ?? new Uint8Array(0));

/** True when `value` looks like a vector (has `id`, `kind` or `input`, and `expected`). */
export function isConformanceVector(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    'id' in value &&
    'expected' in value &&
    ('kind' in value || 'input' in value)
  );
}

/**
 * Runs one vector and compares the verdict, the error code and, where given, the signature
 * base byte for byte. Never throws: failures are reported in the result.
 */
export async function runConformanceVector(vector: unknown): Promise<VectorResult> {
  const v = vector as {
    id?: unknown;
    kind?: unknown;
    input?: unknown;
    expected: VectorExpectation;
  };
  const id = typeof v.id === 'string' ? v.id : '(no id)';
  try {
    const kind = v.kind ?? (v.input !== undefined ? 'nexus-request' : undefined);
    let detail: string;
    if (kind === 'http-signature') detail = await runHttpSignature(vector as HttpSignatureVector);
    else if (kind === 'content-digest') detail = await runDigest(vector as DigestVector);
    else if (kind === 'nexus-request') detail = await runNexus(vector as NexusVector);
    else if (kind === 'nexus-response') detail = await runResponse(vector as ResponseVector);
    else if (kind === 'nexus-relayed-response') detail = await runRelayed(vector as ResponseVector);
    else if (kind === 'nexus-delegation') detail = runDelegation(vector as DelegationVector);
    else if (kind === 'nexus-delegated-request')
      detail = runDelegatedRequest(vector as DelegatedRequestVector);
    else detail = `unknown vector kind ${String(kind)}`;
    return { id, passed: detail === '', detail };
  } catch (err) {
    return { id, passed: false, detail: `runner error: ${(err as Error).message}` };
  }
}

/** Compares an outcome (`undefined` = accepted, or the error) with the expectation. */
function judge(expected: VectorExpectation, error: unknown): string {
  if (expected.verdict === 'accept') {
    if (error === undefined) return '';
    return `expected accept, got ${isNexusError(error) ? error.code : String(error)}`;
  }
  if (error === undefined) return `expected reject (${expected.code ?? 'any'}), got accept`;
  if (!isNexusError(error))
    return `expected ${expected.code ?? 'a NexusError'}, got ${String(error)}`;
  if (expected.code !== undefined && error.code !== expected.code) {
    return `expected ${expected.code}, got ${error.code}`;
  }
  return '';
}

async function outcome(f: () => Promise<unknown>): Promise<unknown> {
  try {
    await f();
    return undefined;
  } catch (err) {
    return err ?? new Error('thrown undefined');
  }
}

interface HttpSignatureVector {
  message: VectorMessage;
  request?: VectorMessage;
  label: string;
  algorithm: string;
  key: Record<string, unknown>;
  private_key?: Record<string, unknown>;
  now?: number;
  expected: VectorExpectation;
}

async function runHttpSignature(v: HttpSignatureVector): Promise<string> {
  if (!isSignatureAlgorithm(v.algorithm)) return `unsupported algorithm ${v.algorithm}`;
  const alg: SignatureAlgorithm = v.algorithm;
  const message = toMessage(v.message);
  const request = v.request ? toMessage(v.request) : undefined;
  const opts = request ? { request } : {};
  if (v.expected.signature_base !== undefined) {
    const sig = parseSignatures(message).get(v.label);
    if (!sig) return `label ${v.label} not found`;
    const { base } = createSignatureBase(message, sig.components, sig.params, opts);
    if (base !== v.expected.signature_base) return 'signature base differs';
  }
  const key = await importJwk(v.key as JsonWebKeyLike, alg, 'verify');
  const result = judge(
    v.expected,
    await outcome(() =>
      verifyMessage(message, { ...opts, label: v.label, key, algorithm: alg, now: v.now }),
    ),
  );
  if (result !== '' || !v.expected.resign || !v.private_key) return result;
  // Deterministic algorithms: re-signing gives the same Signature member, byte for byte.
  const sig = parseSignatures(message).get(v.label)!;
  const signed = await signMessage(message, {
    ...opts,
    label: v.label,
    components: sig.components.map((c) => ({ name: c.name, params: Object.fromEntries(c.params) })),
    params: sig.params,
    key: await importJwk(v.private_key as JsonWebKeyLike, alg, 'sign'),
    algorithm: alg,
  });
  if (signed.signature !== `${v.label}=${serializeByteSequence(sig.signature)}`) {
    return 're-signed signature differs';
  }
  return '';
}

type JsonWebKeyLike = Parameters<typeof importJwk>[0];

interface DigestVector {
  body_base64: string;
  header: string;
  create_algorithm?: DigestAlgorithm;
  expected: VectorExpectation;
}

async function runDigest(v: DigestVector): Promise<string> {
  const body = bodyOf(v.body_base64);
  const result = judge(v.expected, await outcome(() => verifyContentDigest(v.header, body)));
  if (result !== '' || v.create_algorithm === undefined) return result;
  const created = await createContentDigest(body, v.create_algorithm);
  return created === v.header ? '' : 'created digest differs';
}

interface NexusVector {
  now: number;
  input: VectorMessage;
  verifier: {
    issuer: string;
    audience: string;
    authority_jwks: { keys: Array<Record<string, unknown>> };
    revoked_jtis?: string[];
    /** Signature profiles the verifier accepts; default both (nexus/1.1, nexus/1). */
    profiles?: SignatureProfile[];
  };
  expected: VectorExpectation;
}

async function runNexus(v: NexusVector): Promise<string> {
  const revoked = new Set(v.verifier.revoked_jtis ?? []);
  const getAuthorityKey = async (header: ProtectedHeaderParameters) => {
    const jwk = v.verifier.authority_jwks.keys.find((k) => k.kid === header.kid);
    if (!jwk || typeof header.alg !== 'string') throw new NexusError('lease_invalid');
    return importJWK(jwk as JWK, header.alg);
  };
  let base = '';
  const error = await outcome(async () => {
    const verified = await verifyRequest({
      method: v.input.method ?? '',
      url: v.input.url ?? '',
      headers: v.input.headers,
      body: bodyOf(v.input.body_base64),
      issuer: v.verifier.issuer,
      audience: v.verifier.audience,
      getAuthorityKey,
      isRevoked: (claims: LeaseClaims) => revoked.has(claims.jti),
      now: () => v.now * 1000,
      ...(v.verifier.profiles ? { profiles: v.verifier.profiles } : {}),
    });
    base = verified.signatureBase;
  });
  const result = judge(v.expected, error);
  if (result !== '') return result;
  if (v.expected.signature_base !== undefined && base !== v.expected.signature_base) {
    return 'signature base differs';
  }
  return '';
}

interface ResponseVector {
  now: number;
  message: VectorMessage;
  request: { method: string; url: string; nonce: string };
  authority_jwks: { keys: Array<Record<string, unknown>> };
  expected: VectorExpectation;
}

interface DelegationVector {
  parent: Record<string, unknown>;
  request: DelegationRequest;
  expected: VectorExpectation & { grant?: unknown };
}

interface DelegatedRequestVector {
  lease: Record<string, unknown>;
  request: { service: string; intent: string };
  expected: VectorExpectation;
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** A delegation request against the delegating lease (spec §12.5), as an Authority judges it. */
function runDelegation(v: DelegationVector): string {
  let grant: unknown;
  let code: string | undefined;
  try {
    grant = narrowDelegation(v.parent as unknown as LeaseClaims, v.request);
  } catch (err) {
    if (!isNexusError(err)) throw err;
    code = err.code;
  }
  if (v.expected.verdict === 'reject') {
    return code === v.expected.code ? '' : `expected ${v.expected.code}, got ${code ?? 'accept'}`;
  }
  if (code !== undefined) return `expected accept, got ${code}`;
  return sameJson(grant, v.expected.grant) ? '' : `grant ${JSON.stringify(grant)} differs`;
}

/** A request made with a sub-lease (spec §12.5), as a proxy judges it. */
function runDelegatedRequest(v: DelegatedRequestVector): string {
  let code: string | undefined;
  try {
    checkDelegatedRequest(v.lease as unknown as LeaseClaims, v.request.service, v.request.intent);
  } catch (err) {
    if (!isNexusError(err)) throw err;
    code = err.code;
  }
  if (v.expected.verdict === 'reject') {
    return code === v.expected.code ? '' : `expected ${v.expected.code}, got ${code ?? 'accept'}`;
  }
  return code === undefined ? '' : `expected accept, got ${code}`;
}

/** A relayed upstream answer signed by Nexus (spec §10.4), verified as an agent does. */
async function runRelayed(v: ResponseVector): Promise<string> {
  return judge(
    v.expected,
    await outcome(() =>
      verifyRelayedResponseSignature({
        status: v.message.status ?? 0,
        headers: v.message.headers,
        request: v.request,
        keys: v.authority_jwks.keys,
        now: () => v.now * 1000,
      }),
    ),
  );
}

/** A signed Nexus response (spec §10.4), verified as an agent does. */
async function runResponse(v: ResponseVector): Promise<string> {
  return judge(
    v.expected,
    await outcome(() =>
      verifyResponseSignature({
        status: v.message.status ?? 0,
        headers: v.message.headers,
        body: bodyOf(v.message.body_base64),
        request: v.request,
        keys: v.authority_jwks.keys,
        now: () => v.now * 1000,
      }),
    ),
  );
}
