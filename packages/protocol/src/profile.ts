// The Nexus request profile (WIMSE HTTP signatures): signing a request with a lease key
// and verifying it at the proxy, every rule of docs/spec/nexus-v1.md §4-§6 in its order.
// Two editions of the signature are understood: nexus/1.1 (the current WIMSE draft:
// `@path` and `@query`, selected by `tag`) and nexus/1 (`@request-target`, one `wimse`
// member), which verifiers keep accepting for a deprecation period (spec §4.7).

import type { CryptoKey, CryptoKeyPair, JsonWebKey } from './webcrypto.js';
import { decodeJwt } from 'jose';
import {
  createContentDigest,
  verifyContentDigest,
  type DigestAlgorithm,
  type DigestFunction,
} from './digest.js';
import { base64UrlEncode, bodyBytes, subtle, utf8, type BodyInput } from './encoding.js';
import { NexusError } from './errors.js';
import { algorithmForCryptoKey, importJwk, verifyBytes } from './http-signatures/algorithms.js';
import { serializeComponentId, type ComponentInput } from './http-signatures/components.js';
import { fastSignatureBase, parseFastSfString, parseFastSignature } from './fast-signature.js';
import {
  fieldValue,
  splitUrl,
  trimOWS,
  type HeaderInput,
  type HttpMessage,
} from './http-signatures/message.js';
import {
  createSignatureBase,
  parseSignatures,
  signMessage,
  type ParsedSignature,
} from './http-signatures/signatures.js';
import {
  agentNameFromSub,
  signatureAlgorithmForJwk,
  verifyLease,
  type AgentPublicJwk,
  type Clock,
  type LeaseClaims,
  type LeaseKey,
} from './lease.js';
import type { ProtectedHeaderParameters } from 'jose';
import { parseSfString, serializeSfString } from './structured-fields.js';

/** The only signature label of the profile. */
export const SIGNATURE_LABEL = 'wimse';
/** The required `tag` parameter. */
export const SIGNATURE_TAG = 'wimse-workload-to-workload';
/** Maximum `expires - created`, seconds. */
export const MAX_SIGNATURE_WINDOW = 60;
/** Maximum Nexus-Intent length, characters. */
export const MAX_INTENT_LENGTH = 512;
/** Minimum nonce length, characters (>= 96 bits). */
export const MIN_NONCE_LENGTH = 16;

/** A signature profile: nexus/1.1 (current WIMSE draft) or the deprecated nexus/1. */
export type SignatureProfile = 'nexus/1.1' | 'nexus/1';
/** Profiles this implementation verifies, newest first (discovery `signature_profiles`). */
export const SIGNATURE_PROFILES: readonly SignatureProfile[] = ['nexus/1.1', 'nexus/1'];
/** The profile a signer uses unless told otherwise. */
export const DEFAULT_SIGNATURE_PROFILE: SignatureProfile = 'nexus/1.1';

const REQUIRED_COMPONENTS: Readonly<Record<SignatureProfile, readonly string[]>> = {
  // draft-ietf-wimse-http-signature (-07 on): @path and @query instead of @request-target,
  // @query present (as `?`) even without a query; no @authority (wimse-aud binds the
  // recipient).
  'nexus/1.1': ['@method', '@path', '@query', 'workload-identity-token', 'nexus-intent'],
  'nexus/1': ['@method', '@request-target', 'workload-identity-token', 'nexus-intent'],
};
const BODY_COMPONENTS = ['content-type', 'content-digest'];
/** Fields that MUST arrive as one field line: a repeat is `request_invalid` (spec §8 step 2). */
const SINGLE_FIELDS = [
  'workload-identity-token',
  'nexus-intent',
  'signature',
  'signature-input',
  'content-digest',
  'content-type',
];
const FETCH_NORMALISED = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** An agent signature algorithm of the profile. */
export type AgentSignatureAlgorithm = 'ed25519' | 'ecdsa-p256-sha256';

/** The `wimse-aud` of a request URL: scheme, authority and path, without query. */
export function signatureAudience(url: string): string {
  const parts = splitUrl(url);
  if (!parts) throw new NexusError('request_invalid');
  return `${parts.scheme}://${parts.authority}${parts.path}`;
}

function checkIntent(intent: string): void {
  if (intent.length > MAX_INTENT_LENGTH || !/^[\x20-\x7e]*$/.test(intent)) {
    throw new NexusError('intent_invalid');
  }
}

/** Options of {@link signRequest}. */
export interface SignRequestOptions {
  method: string;
  /** Absolute URL at the proxy: `{proxy}/{service}/{path}?{query}`. */
  url: string;
  /** Request headers; MUST include `content-type` when there is a body. */
  headers?: HeaderInput;
  body?: BodyInput;
  /** The lease JWT. */
  lease: string;
  /** The agent private key (Ed25519 or ECDSA P-256; may be non-extractable). */
  key: CryptoKey;
  /** Declared purpose (printable ASCII, <= 512 characters). Default empty. */
  intent?: string;
  digestAlgorithm?: DigestAlgorithm;
  now?: Clock;
  /** The nonce (>= 16 characters); default 128 random bits, base64url. */
  nonce?: string;
  /** `expires - created` (1..60, default 30); capped at the lease `exp`. */
  ttlSeconds?: number;
  /** Signature profile (default nexus/1.1; nexus/1 is deprecated, spec §4.7). */
  profile?: SignatureProfile;
}

/**
 * Signs a request per the Nexus profile (nexus/1.1 unless `profile` says otherwise). Returns the header fields to add (lower-case
 * names); they replace any same-named header of the request.
 *
 * @example
 * const added = await signRequest({ method: 'GET', url: `${proxy}/github/user`, lease, key,
 *   intent: 'read my profile' });
 * await fetch(url, { headers: { ...headers, ...added } });
 */
export async function signRequest(options: SignRequestOptions): Promise<Record<string, string>> {
  const algorithm = algorithmForCryptoKey(options.key);
  if (algorithm !== 'ed25519' && algorithm !== 'ecdsa-p256-sha256') {
    throw new NexusError('request_invalid', 'agent key must be Ed25519 or ECDSA P-256');
  }
  const ttl = options.ttlSeconds ?? 30;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_SIGNATURE_WINDOW) {
    throw new NexusError('request_invalid', 'ttlSeconds must be 1..60');
  }
  const intent = options.intent ?? '';
  checkIntent(intent);
  const audience = signatureAudience(options.url);
  const created = Math.floor((options.now ?? Date.now)() / 1000);
  let expires = created + ttl;
  try {
    const exp = decodeJwt(options.lease).exp;
    if (typeof exp === 'number') expires = Math.min(expires, exp);
  } catch (cause) {
    throw new NexusError('lease_invalid', undefined, { cause });
  }
  if (expires <= created) throw new NexusError('lease_expired');
  const nonce =
    options.nonce ?? base64UrlEncode(globalThis.crypto.getRandomValues(new Uint8Array(16)));
  if (nonce.length < MIN_NONCE_LENGTH) throw new NexusError('request_invalid', 'nonce too short');

  const method = FETCH_NORMALISED.has(options.method.toUpperCase())
    ? options.method.toUpperCase()
    : options.method;
  const body = bodyBytes(options.body);
  const added: Record<string, string> = {
    'workload-identity-token': options.lease,
    'nexus-intent': serializeSfString(intent),
  };
  const profile = options.profile ?? DEFAULT_SIGNATURE_PROFILE;
  const required = REQUIRED_COMPONENTS[profile];
  if (required === undefined) throw new NexusError('request_invalid', 'unknown profile');
  const components: ComponentInput[] = [...required];
  const replaced = new Set([
    'workload-identity-token',
    'nexus-intent',
    'signature',
    'signature-input',
  ]);
  if (body.length > 0) {
    if (fieldValue(options.headers ?? {}, 'content-type') === undefined) {
      throw new NexusError('request_invalid', 'content-type is required with a body');
    }
    added['content-digest'] = await createContentDigest(body, options.digestAlgorithm);
    replaced.add('content-digest');
    components.push(...BODY_COMPONENTS);
  }
  const headers: Array<[string, string]> = [];
  for (const [name, value] of headerPairs(options.headers ?? {})) {
    if (!replaced.has(name)) headers.push([name, value]);
  }
  for (const [name, value] of Object.entries(added)) headers.push([name, value]);
  const signed = await signMessage(
    { method, url: options.url, headers },
    {
      label: SIGNATURE_LABEL,
      components,
      params: {
        created,
        expires,
        nonce,
        tag: SIGNATURE_TAG,
        'wimse-aud': audience,
      },
      key: options.key,
      algorithm,
    },
  );
  added['signature-input'] = signed.signatureInput;
  added['signature'] = signed.signature;
  return added;
}

function headerPairs(headers: HeaderInput): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (Array.isArray(headers)) {
    for (const [n, v] of headers as ReadonlyArray<readonly [string, string]>) {
      out.push([n.toLowerCase(), v]);
    }
  } else {
    const rec = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
    for (const [n, v] of Object.entries(rec)) {
      if (v === undefined) continue;
      for (const one of typeof v === 'string' ? [v] : v) out.push([n.toLowerCase(), one]);
    }
  }
  return out;
}

/** Options of {@link verifyRequestSignature}. */
export interface VerifyRequestSignatureOptions {
  method: string;
  /** The verifier's own absolute URL for this request (query included). */
  url: string;
  headers: HeaderInput;
  /** The Authority URL (lease `iss`). */
  issuer: string;
  /** This proxy's URL (lease `aud`). */
  audience: string;
  /**
   * Resolves the Authority key for a lease header (by `kid`); throw or return undefined if
   * unknown. May answer synchronously (no microtask per request).
   */
  getAuthorityKey: (
    protectedHeader: ProtectedHeaderParameters,
  ) => LeaseKey | undefined | Promise<LeaseKey | undefined>;
  /** Revocation check (by lease, agent or all). */
  isRevoked?: (claims: LeaseClaims) => boolean | Promise<boolean>;
  now?: Clock;
  /** Signature clock skew, seconds (default 5). */
  skewSeconds?: number;
  /** Lease clock skew, seconds (default 30). */
  leaseSkewSeconds?: number;
  /** Signature profiles accepted (default {@link SIGNATURE_PROFILES}: nexus/1.1 and nexus/1). */
  profiles?: readonly SignatureProfile[];
  /**
   * Default true: fields in the profile's fixed shape skip the generic structured-field
   * parse and the base is built by concatenation; anything else takes the strict path. The
   * verdict and error code are the same either way; false forces the strict path (tests and
   * benchmarks compare the two).
   */
  fastPath?: boolean;
  /**
   * Checks the agent signature over the signature base (default: WebCrypto `verify`). A
   * server may pass one that verifies on its runtime's thread pool without WebCrypto's
   * per-call overhead (packages/server: node:crypto's async one-shot verify). It MUST
   * resolve true only for a valid signature by `key` over the UTF-8 bytes of `base`, and
   * false (never throw) for anything else.
   */
  verifySignature?: SignatureVerifyFunction;
}

/**
 * Verifies an agent signature: `key` is the lease's imported `cnf.jwk` (usage `verify`),
 * `base` the signature base, `signature` the decoded Signature member.
 */
export type SignatureVerifyFunction = (
  algorithm: AgentSignatureAlgorithm,
  key: CryptoKey,
  base: string,
  signature: Uint8Array,
) => Promise<boolean>;

/** WebCrypto verification, the default {@link SignatureVerifyFunction}. */
export const webCryptoVerify: SignatureVerifyFunction = (algorithm, key, base, signature) =>
  verifyBytes(algorithm, key, utf8(base), signature);

/** A request whose lease and signature verified. */
export interface VerifiedRequest {
  claims: LeaseClaims;
  /** The agent name from `sub`. */
  agent: string;
  /** The lease `jti`. */
  leaseId: string;
  nonce: string;
  created: number;
  expires: number;
  intent: string;
  algorithm: AgentSignatureAlgorithm;
  /** The raw Signature field value. */
  signature: string;
  /** The raw Signature-Input field value. */
  signatureInput: string;
  /** The profile the signature followed (by its covered components). */
  profile: SignatureProfile;
  /** The label of the WIMSE signature (selected by its `tag`). */
  label: string;
  /** Covered component identifiers, in received order (`content-digest`, `"@query-param";name="x"` for parameterised ones). */
  covered: string[];
  signatureBase: string;
}

const KEY_CACHE_LIMIT = 1024;
const keyCache = new Map<string, CryptoKey>();

/** Imports (or reuses) the agent public key of a `cnf.jwk`; cached by its RFC 7638 members. */
async function agentKey(jwk: AgentPublicJwk, alg: AgentSignatureAlgorithm): Promise<CryptoKey> {
  const id = thumbprintInput(jwk as unknown as Record<string, unknown>);
  const cached = keyCache.get(id);
  if (cached) return cached;
  let key: CryptoKey;
  try {
    key = await importJwk(jwk as unknown as JsonWebKey & Record<string, unknown>, alg, 'verify');
  } catch (cause) {
    throw new NexusError('lease_invalid', undefined, { cause });
  }
  if (keyCache.size >= KEY_CACHE_LIMIT) {
    const oldest = keyCache.keys().next().value;
    if (oldest !== undefined) keyCache.delete(oldest);
  }
  keyCache.set(id, key);
  return key;
}

/** A lease that verified, kept so that later requests on it pay for their own signature only. */
interface CachedLease {
  readonly claims: LeaseClaims;
  readonly header: ProtectedHeaderParameters;
  /** The Authority key it verified with: a hit requires the same key object again. */
  readonly authorityKey: LeaseKey;
  readonly issuer: string;
  readonly audience: string;
  /** The agent name of `sub` and the signature algorithm of `cnf.jwk` (verifyLease checked both). */
  readonly agent: string;
  readonly algorithm: AgentSignatureAlgorithm;
  /** The imported `cnf.jwk`, once a request signature was checked with it. */
  agentKey?: CryptoKey;
}

/** A hook's answer that is still to come (awaited only then: no microtask for a plain value). */
function isThenable<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

const LEASE_CACHE_LIMIT = 10_000;
const leaseCache = new Map<string, CachedLease>();

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * {@link verifyLease}, remembered per exact token string until the lease expires: the
 * lease JWT signature is checked once, not on every request.
 *
 * MUST (kept on every hit): the same issuer and audience; the Authority key for the
 * token's header is still the very key object it verified with (a rotated-out or retired
 * key is a miss, and the full check then refuses the lease); `exp` and `nbf` against the
 * current clock, in the order and with the codes of verifyLease. Revocation is the
 * caller's next step on every request, hit or miss. The claims are frozen: shared by
 * every request on the lease.
 */
async function verifyLeaseCached(
  lease: string,
  options: VerifyRequestSignatureOptions,
  clock: Clock,
): Promise<CachedLease> {
  const skew = options.leaseSkewSeconds ?? 30;
  const hit = leaseCache.get(lease);
  if (hit !== undefined) {
    let key: LeaseKey | undefined;
    try {
      const found = options.getAuthorityKey(hit.header);
      key = isThenable(found) ? await found : found;
    } catch {
      key = undefined;
    }
    if (
      key !== undefined &&
      key === hit.authorityKey &&
      hit.issuer === options.issuer &&
      hit.audience === options.audience
    ) {
      const now = Math.floor(clock() / 1000);
      if (now > hit.claims.exp + skew) {
        leaseCache.delete(lease);
        throw new NexusError('lease_expired'); // [LEASE-EXP]
      }
      if (hit.claims.nbf > now + skew) throw new NexusError('lease_not_yet_valid'); // [LEASE-NBF]
      return hit;
    }
    leaseCache.delete(lease);
  }
  let authorityKey: LeaseKey | undefined;
  const { claims, protectedHeader } = await verifyLease(lease, {
    getKey: async (header) => (authorityKey = await options.getAuthorityKey(header)),
    issuer: options.issuer,
    audience: options.audience,
    now: clock,
    skewSeconds: skew,
  });
  const entry: CachedLease = {
    claims: deepFreeze(claims),
    header: deepFreeze(protectedHeader),
    authorityKey: authorityKey!,
    issuer: options.issuer,
    audience: options.audience,
    agent: agentNameFromSub(claims.sub)!,
    algorithm: signatureAlgorithmForJwk(claims.cnf.jwk),
  };
  if (leaseCache.size >= LEASE_CACHE_LIMIT) {
    const oldest = leaseCache.keys().next().value;
    if (oldest !== undefined) leaseCache.delete(oldest);
  }
  leaseCache.set(lease, entry);
  return entry;
}

/**
 * Verifies the lease and the signature of a request (no body yet): lease -> revocation ->
 * signature fields and parameters -> intent -> wimse-aud -> window -> signature.
 * The body digest is checked later by {@link verifyRequestBody}.
 *
 * @throws NexusError with the code of the first failing rule.
 */
export async function verifyRequestSignature(
  options: VerifyRequestSignatureOptions,
): Promise<VerifiedRequest> {
  const bad = (): never => {
    throw new NexusError('signature_invalid');
  };
  const clock = options.now ?? Date.now;
  const fields = indexFields(options.headers);
  // 0. One field line each for the fields the profile reads [FIELD-SINGLE] (spec §8 step
  // 2): a signer and a verifier that combined repeated lines differently would read
  // different values. One code for all of them, as the proxy answers before this runs.
  for (const name of SINGLE_FIELDS) {
    if ((fields.get(name)?.length ?? 0) > 1) {
      throw new NexusError('request_invalid');
    }
  }
  // 1. Lease [LEASE-HEADER] and its checks [LEASE-*].
  const leaseLines = fields.get('workload-identity-token');
  if (!leaseLines) throw new NexusError('lease_missing');
  const lease = trimOWS(leaseLines[0]!);
  if (lease === '') throw new NexusError('lease_missing');
  const entry = await verifyLeaseCached(lease, options, clock);
  const claims = entry.claims;
  if (options.isRevoked !== undefined) {
    const revoked = options.isRevoked(claims);
    if (isThenable(revoked) ? await revoked : revoked) {
      throw new NexusError('lease_revoked'); // [LEASE-REVOKED]
    }
  }
  const algorithm = entry.algorithm;

  // 2. Signature fields and parameters.
  const message: HttpMessage = {
    method: options.method,
    url: options.url,
    headers: options.headers,
  };
  // The fast path only recognises what parseSignatures accepts with the same result.
  const inputLines = fields.get('signature-input');
  const sigLines = fields.get('signature');
  const fast =
    options.fastPath !== false && inputLines !== undefined && sigLines !== undefined
      ? parseFastSignature(inputLines[0]!, sigLines[0]!)
      : undefined;
  const signatures: Map<string, ParsedSignature> =
    fast !== undefined
      ? new Map([[fast.label, fast]])
      : parseSignatures(message, { rejectDuplicateKeys: true });
  // The WIMSE signature is the one whose tag is wimse-workload-to-workload, never chosen
  // by label (draft-ietf-wimse-http-signature; RFC 9421 §7.2.5): none is [SIG-TAG], two
  // are ambiguous [SIG-SELECT]. Other signatures (an intermediary's) are ignored.
  let sig: ParsedSignature | undefined;
  for (const candidate of signatures.values()) {
    if (candidate.params.get('tag') !== SIGNATURE_TAG) continue;
    if (sig !== undefined) bad(); // [SIG-SELECT]
    sig = candidate;
  }
  if (sig === undefined) return bad(); // [SIG-TAG]
  const p = sig.params;
  if (p.has('keyid') || p.has('alg')) bad(); // [SIG-NO-KEYID]
  const created = p.get('created');
  const expires = p.get('expires');
  const nonce = p.get('nonce');
  const aud = p.get('wimse-aud');
  if (typeof created !== 'number' || typeof expires !== 'number') return bad(); // [SIG-PARAMS]
  if (typeof nonce !== 'string' || typeof aud !== 'string') return bad();
  if (nonce.length < MIN_NONCE_LENGTH) bad(); // [SIG-NONCE]
  const covered = sig.components.map((c) =>
    c.params.size === 0 ? c.name : serializeComponentId(c),
  );
  // The profile follows from what is covered: @path with @query is nexus/1.1,
  // @request-target alone is the deprecated nexus/1 (and keeps its own rules).
  const profile: SignatureProfile =
    covered.includes('@path') && covered.includes('@query')
      ? 'nexus/1.1'
      : covered.includes('@request-target')
        ? 'nexus/1'
        : bad(); // [SIG-COVERED]
  if (!(options.profiles ?? SIGNATURE_PROFILES).includes(profile)) bad(); // [SIG-PROFILE]
  if (profile === 'nexus/1' && (signatures.size !== 1 || sig.label !== SIGNATURE_LABEL)) {
    bad(); // [SIG-SINGLE] (nexus/1 only)
  }
  for (const name of REQUIRED_COMPONENTS[profile]) if (!covered.includes(name)) bad(); // [SIG-COVERED]
  if (fields.has('content-digest')) {
    for (const name of BODY_COMPONENTS) if (!covered.includes(name)) bad(); // [SIG-BODY-COVERED]
  }
  // [INTENT-REQUIRED] [INTENT-FORMAT]
  const intentLines = fields.get('nexus-intent');
  if (!intentLines) throw new NexusError('intent_invalid');
  const intent =
    (fast !== undefined ? parseFastSfString(intentLines[0]!) : undefined) ??
    parseSfString(trimOWS(intentLines[0]!), { code: 'intent_invalid' });
  checkIntent(intent);
  const urlParts = splitUrl(options.url);
  if (urlParts === undefined) throw new NexusError('request_invalid');
  const ownAudience = `${urlParts.scheme}://${urlParts.authority}${urlParts.path}`;
  if (aud !== ownAudience) bad(); // [SIG-AUD]

  // 3. Window.
  const now = Math.floor(clock() / 1000);
  const skew = options.skewSeconds ?? 5;
  if (!(expires > created) || expires - created > MAX_SIGNATURE_WINDOW) bad(); // [SIG-WINDOW]
  if (created > now + skew) bad(); // [SIG-CREATED-FUTURE]
  if (now > expires + skew) throw new NexusError('signature_expired'); // [SIG-EXPIRED]
  if (expires > claims.exp) bad(); // [SIG-LEASE-EXP]

  // 4. Signature [SIG-VERIFY], over the base rebuilt from the received member.
  const single = (name: string): string | undefined => {
    const lines = fields.get(name);
    return lines?.length === 1 ? lines[0] : undefined;
  };
  const base =
    (fast !== undefined ? fastSignatureBase(fast, options.method, urlParts, single) : undefined) ??
    createSignatureBase(message, sig.components, p, { code: 'signature_invalid' }).base;
  const key = (entry.agentKey ??= await agentKey(claims.cnf.jwk, algorithm));
  const verify = options.verifySignature ?? webCryptoVerify;
  if (!(await verify(algorithm, key, base, sig.signature))) bad();

  return {
    claims,
    agent: entry.agent,
    leaseId: claims.jti,
    nonce,
    created,
    expires,
    intent,
    algorithm,
    profile,
    label: sig.label,
    signature: sigLines!.map(trimOWS).join(', '),
    signatureInput: inputLines!.map(trimOWS).join(', '),
    covered,
    signatureBase: base,
  };
}

/**
 * The field lines of a request by lower-case name, in order, from one walk of the headers
 * (as {@link fieldLines} per name; a name with no line is absent).
 */
function indexFields(headers: HeaderInput): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (name: string, value: string): void => {
    const lines = out.get(name);
    if (lines === undefined) out.set(name, [value]);
    else lines.push(value);
  };
  if (Array.isArray(headers)) {
    for (const pair of headers as ReadonlyArray<readonly [string, string]>) {
      add(pair[0].toLowerCase(), pair[1]);
    }
  } else {
    const rec = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
    for (const key of Object.keys(rec)) {
      const v = rec[key];
      if (v === undefined) continue;
      const name = key.toLowerCase();
      if (typeof v === 'string') add(name, v);
      else for (const one of v) add(name, one);
    }
  }
  return out;
}

/**
 * Checks the body against a verified request: a non-empty body needs a covered
 * Content-Digest and Content-Type, and the digest must match. An empty body's digest, if
 * sent, must match too.
 *
 * @throws NexusError `digest_missing`, `signature_invalid`, `digest_invalid`, `digest_mismatch`.
 */
export async function verifyRequestBody(
  verified: Pick<VerifiedRequest, 'covered'>,
  headers: HeaderInput,
  body: BodyInput,
  hash?: DigestFunction,
): Promise<void> {
  const bytes = bodyBytes(body);
  const digest = fieldValue(headers, 'content-digest');
  if (bytes.length > 0) {
    if (digest === undefined) throw new NexusError('digest_missing'); // [DIGEST-REQUIRED]
    for (const name of BODY_COMPONENTS) {
      if (!verified.covered.includes(name)) throw new NexusError('signature_invalid'); // [SIG-BODY-COVERED]
    }
  }
  if (digest !== undefined) await verifyContentDigest(digest, bytes, hash); // [DIGEST-ALG] [DIGEST-MATCH]
}

/** Options of {@link verifyRequest}. */
export interface VerifyRequestOptions extends VerifyRequestSignatureOptions {
  body?: BodyInput;
}

/** {@link verifyRequestSignature} then {@link verifyRequestBody}. Replay is the caller's next step. */
export async function verifyRequest(options: VerifyRequestOptions): Promise<VerifiedRequest> {
  const verified = await verifyRequestSignature(options);
  await verifyRequestBody(verified, options.headers, options.body);
  return verified;
}

/** A freshly generated agent key pair. */
export interface AgentKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public key as JWK with `alg` (EdDSA or ES256), for `cnf.jwk`. */
  publicJwk: AgentPublicJwk;
  algorithm: AgentSignatureAlgorithm;
}

/**
 * Generates an agent key pair with WebCrypto. The private key is non-extractable by
 * default: it never leaves the process.
 */
export async function generateAgentKey(
  alg: 'ed25519' | 'ecdsa-p256' = 'ed25519',
  options: { extractable?: boolean } = {},
): Promise<AgentKeyPair> {
  const params = alg === 'ed25519' ? { name: 'Ed25519' } : { name: 'ECDSA', namedCurve: 'P-256' };
  const pair = (await subtle().generateKey(params, options.extractable ?? false, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
  const jwk = await subtle().exportKey('jwk', pair.publicKey);
  const publicJwk: AgentPublicJwk =
    alg === 'ed25519'
      ? { kty: 'OKP', crv: 'Ed25519', x: jwk.x!, alg: 'EdDSA' }
      : { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y!, alg: 'ES256' };
  return {
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    publicJwk,
    algorithm: alg === 'ed25519' ? 'ed25519' : 'ecdsa-p256-sha256',
  };
}

const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = {
  OKP: ['crv', 'kty', 'x'],
  EC: ['crv', 'kty', 'x', 'y'],
  RSA: ['e', 'kty', 'n'],
  oct: ['k', 'kty'],
};

function thumbprintInput(jwk: Record<string, unknown>): string {
  const members = THUMBPRINT_MEMBERS[String(jwk.kty)];
  if (!members) throw new NexusError('request_invalid');
  const obj: Record<string, unknown> = {};
  for (const m of members) {
    if (typeof jwk[m] !== 'string') throw new NexusError('request_invalid');
    obj[m] = jwk[m];
  }
  return JSON.stringify(obj);
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url). */
export async function jwkThumbprint(jwk: Record<string, unknown>): Promise<string> {
  const digest = await subtle().digest('SHA-256', utf8(thumbprintInput(jwk)));
  return base64UrlEncode(new Uint8Array(digest));
}
