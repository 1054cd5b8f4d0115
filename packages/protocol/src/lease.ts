// Lease tokens: WIMSE workload identity tokens (JWT, typ wit+jwt) issued by the Authority
// and bound to the agent key by cnf.jwk. Signing and strict verification in the order of
// the Nexus v1 profile (typ, alg, kid, signature, iss, aud, claims, exp/nbf, cnf).

import {
  compactVerify,
  decodeProtectedHeader,
  SignJWT,
  type KeyInput,
  type ProtectedHeaderParameters,
} from 'jose';
import { base64UrlDecode, utf8Decode } from './encoding.js';
import { isNexusError, NexusError } from './errors.js';

/** The JOSE `typ` of a lease. */
export const LEASE_TYP = 'wit+jwt';

/**
 * True when a JOSE `typ` names the WIT media type: `wit+jwt` or `application/wit+jwt`,
 * compared without regard to case (RFC 7515 §4.1.9: the `application/` prefix may be
 * omitted; media type names are case-insensitive, RFC 6838 §4.2).
 */
export function isLeaseTyp(typ: unknown): boolean {
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return t === LEASE_TYP || t === `application/${LEASE_TYP}`;
}
/** Lease signing algorithms the profile allows (never `none`, never HMAC). */
export const LEASE_ALGORITHMS = Object.freeze(['EdDSA', 'ES256'] as const);
/** A lease signing algorithm. */
export type LeaseAlgorithm = (typeof LEASE_ALGORITHMS)[number];

/** A clock: milliseconds since the epoch (like `Date.now`). */
export type Clock = () => number;

/** The agent public key carried in `cnf.jwk`. */
export interface AgentPublicJwk {
  kty: 'OKP' | 'EC';
  crv: 'Ed25519' | 'P-256';
  alg: 'EdDSA' | 'ES256';
  x: string;
  y?: string;
  kid?: string;
  [member: string]: unknown;
}

/** The claims of a lease. */
export interface LeaseClaims {
  /** Authority URL. */
  iss: string;
  /** `nexus://<trust-domain>/agent/<name>`. */
  sub: string;
  /** The proxy URL. */
  aud: string | string[];
  iat: number;
  nbf: number;
  exp: number;
  /** The lease id: >= 128 bits random, base64url. */
  jti: string;
  /** Space-separated roles. */
  scope: string;
  cnf: { jwk: AgentPublicJwk };
  /** RFC 8693 actor: on whose behalf the agent acts. */
  act?: { sub: string; [claim: string]: unknown };
  /** Task id for provenance. */
  nexus_task?: string;
  [claim: string]: unknown;
}

/** The protected header of a verified lease. */
export type LeaseProtectedHeader = ProtectedHeaderParameters & {
  alg: LeaseAlgorithm;
  kid: string;
  typ: string;
};

/** A key the Authority signs or verifies leases with (CryptoKey, KeyObject or JWK). */
export type LeaseKey = KeyInput;

const SUB_RE = /^nexus:\/\/([A-Za-z0-9.-]+(?::[0-9]+)?)\/agent\/([A-Za-z0-9._~-]{1,128})$/;
const JTI_RE = /^[A-Za-z0-9_-]{22,}$/;

/**
 * Builds the agent subject URI, e.g. `agentSub('example.com', 'triage-bot')` ->
 * `nexus://example.com/agent/triage-bot`.
 *
 * @throws NexusError `request_invalid` when the trust domain or name is not allowed.
 */
export function agentSub(trustDomain: string, name: string): string {
  const sub = `nexus://${trustDomain}/agent/${name}`;
  if (!SUB_RE.test(sub)) throw new NexusError('request_invalid');
  return sub;
}

/** The agent name of a lease subject, or undefined when `sub` is not a Nexus agent URI. */
export function agentNameFromSub(sub: string): string | undefined {
  return SUB_RE.exec(sub)?.[2];
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function isB64UrlOfLength(value: unknown, length: number): boolean {
  return typeof value === 'string' && base64UrlDecode(value)?.length === length;
}

/**
 * The RFC 9421 algorithm an agent key signs with: OKP/Ed25519 (`alg: EdDSA`) -> `ed25519`,
 * EC/P-256 (`alg: ES256`) -> `ecdsa-p256-sha256`. The JWK MUST be public (no `d`).
 *
 * @throws NexusError `lease_invalid` for any other key, a private key or an inconsistent `alg`.
 */
export function signatureAlgorithmForJwk(jwk: unknown): 'ed25519' | 'ecdsa-p256-sha256' {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw new NexusError('lease_invalid');
  }
  const k = jwk as Record<string, unknown>;
  for (const m of PRIVATE_MEMBERS) if (m in k) throw new NexusError('lease_invalid');
  if (k.kty === 'OKP' && k.crv === 'Ed25519' && k.alg === 'EdDSA' && isB64UrlOfLength(k.x, 32)) {
    if (k.y !== undefined) throw new NexusError('lease_invalid');
    return 'ed25519';
  }
  if (
    k.kty === 'EC' &&
    k.crv === 'P-256' &&
    k.alg === 'ES256' &&
    isB64UrlOfLength(k.x, 32) &&
    isB64UrlOfLength(k.y, 32)
  ) {
    return 'ecdsa-p256-sha256';
  }
  throw new NexusError('lease_invalid');
}

/** Options of {@link signLease}. */
export interface SignLeaseOptions {
  kid: string;
  alg: LeaseAlgorithm;
}

/**
 * Signs a lease as the Authority (JOSE header `{alg, kid, typ: "wit+jwt"}`).
 *
 * @example
 * const lease = await signLease(claims, authorityPrivateKey, { kid: 'k1', alg: 'EdDSA' });
 */
export async function signLease(
  claims: LeaseClaims,
  privateKey: LeaseKey,
  options: SignLeaseOptions,
): Promise<string> {
  if (!LEASE_ALGORITHMS.includes(options.alg) || !options.kid) {
    throw new NexusError('request_invalid');
  }
  signatureAlgorithmForJwk(claims.cnf?.jwk);
  try {
    return await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: options.alg, kid: options.kid, typ: LEASE_TYP })
      .sign(privateKey);
  } catch (cause) {
    throw new NexusError('internal_error', 'lease signing failed', { cause });
  }
}

/** Options of {@link verifyLease}. */
export interface VerifyLeaseOptions {
  /** Resolves the Authority key for the (unverified) protected header; throw if unknown. */
  getKey: (protectedHeader: ProtectedHeaderParameters) => Promise<LeaseKey | undefined>;
  /** The Authority URL (`iss`). */
  issuer: string;
  /** The proxy URL this verifier serves (`aud`). */
  audience: string;
  now?: Clock;
  /** Allowed clock skew for `exp` / `nbf` (default 30 s). */
  skewSeconds?: number;
}

/** Result of {@link verifyLease}. */
export interface VerifiedLease {
  claims: LeaseClaims;
  protectedHeader: LeaseProtectedHeader;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/**
 * Verifies a lease per the Nexus v1 profile.
 *
 * @throws NexusError `lease_invalid`, `lease_expired` or `lease_not_yet_valid`.
 */
export async function verifyLease(
  token: string,
  options: VerifyLeaseOptions,
): Promise<VerifiedLease> {
  const invalid = (cause?: unknown): never => {
    throw new NexusError('lease_invalid', undefined, { cause });
  };
  if (
    typeof token !== 'string' ||
    !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)
  ) {
    invalid();
  }
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch (cause) {
    return invalid(cause);
  }
  if (!isLeaseTyp(header.typ)) invalid(); // [LEASE-TYP]
  if (!LEASE_ALGORITHMS.includes(header.alg as LeaseAlgorithm)) invalid(); // [LEASE-ALG]
  if (typeof header.kid !== 'string' || header.kid === '') invalid(); // [LEASE-KID]
  let key: LeaseKey | undefined;
  try {
    key = await options.getKey(header);
  } catch (cause) {
    if (isNexusError(cause) && cause.code !== 'lease_invalid') throw cause;
    invalid(cause);
  }
  if (key === undefined || key instanceof Uint8Array) invalid(); // never an HMAC secret
  let payloadBytes: Uint8Array;
  try {
    // [LEASE-SIG]; the algorithm is pinned to the (allow-listed) header value.
    payloadBytes = (await compactVerify(token, key!, { algorithms: [header.alg!] })).payload;
  } catch (cause) {
    return invalid(cause);
  }
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(utf8Decode(payloadBytes) ?? '');
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return invalid();
    claims = parsed as Record<string, unknown>;
  } catch (cause) {
    return invalid(cause);
  }
  if (claims.iss !== options.issuer) invalid(); // [LEASE-ISS]
  const aud = claims.aud;
  const audOk = Array.isArray(aud) ? aud.includes(options.audience) : aud === options.audience;
  if (!audOk) invalid(); // [LEASE-AUD]
  // [LEASE-CLAIMS]
  if (typeof claims.sub !== 'string' || agentNameFromSub(claims.sub) === undefined) invalid();
  if (!isInt(claims.iat) || !isInt(claims.nbf) || !isInt(claims.exp)) invalid();
  if ((claims.exp as number) <= (claims.nbf as number)) invalid();
  if (typeof claims.jti !== 'string' || !JTI_RE.test(claims.jti)) invalid();
  if (typeof claims.scope !== 'string') invalid();
  if (claims.act !== undefined) {
    const act = claims.act as { sub?: unknown } | null;
    if (typeof act !== 'object' || act === null || typeof act.sub !== 'string') invalid();
  }
  if (claims.nexus_task !== undefined && typeof claims.nexus_task !== 'string') invalid();
  // A sub-lease's narrowing (spec §12.5) is read by the proxy: a malformed one is refused,
  // never taken for "not narrowed".
  for (const name of ['nexus_services', 'nexus_intents'] as const) {
    const v = claims[name];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) invalid();
  }
  const now = Math.floor((options.now ?? Date.now)() / 1000);
  const skew = options.skewSeconds ?? 30;
  if (now > (claims.exp as number) + skew) throw new NexusError('lease_expired'); // [LEASE-EXP]
  if ((claims.nbf as number) > now + skew) throw new NexusError('lease_not_yet_valid'); // [LEASE-NBF]
  const cnf = claims.cnf as { jwk?: unknown } | undefined;
  if (typeof cnf !== 'object' || cnf === null) invalid(); // [LEASE-CNF]
  signatureAlgorithmForJwk(cnf!.jwk);
  return {
    claims: claims as unknown as LeaseClaims,
    protectedHeader: header as LeaseProtectedHeader,
  };
}
