// RFC 9421 §3.3 signature algorithms over WebCrypto: ed25519, ecdsa-p256-sha256 (raw r||s),
// hmac-sha256, rsa-pss-sha512 and rsa-v1_5-sha256. Keys may be non-extractable.

import type {
  AlgorithmIdentifier,
  EcKeyImportParams,
  RsaHashedImportParams,
  HmacImportParams,
  EcdsaParams,
  RsaPssParams,
  CryptoKey,
  JsonWebKey,
  KeyUsage,
} from '../webcrypto.js';
import { bufferSource, subtle } from '../encoding.js';
import { NexusError } from '../errors.js';

/** An RFC 9421 algorithm name supported here. */
export type SignatureAlgorithm =
  'ed25519' | 'ecdsa-p256-sha256' | 'hmac-sha256' | 'rsa-pss-sha512' | 'rsa-v1_5-sha256';

/** Every algorithm of {@link SignatureAlgorithm}. */
export const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = Object.freeze([
  'ed25519',
  'ecdsa-p256-sha256',
  'hmac-sha256',
  'rsa-pss-sha512',
  'rsa-v1_5-sha256',
]);

interface AlgSpec {
  importParams: AlgorithmIdentifier | EcKeyImportParams | RsaHashedImportParams | HmacImportParams;
  signParams: AlgorithmIdentifier | EcdsaParams | RsaPssParams;
}

const SPECS: Record<SignatureAlgorithm, AlgSpec> = {
  ed25519: { importParams: { name: 'Ed25519' }, signParams: { name: 'Ed25519' } },
  'ecdsa-p256-sha256': {
    importParams: { name: 'ECDSA', namedCurve: 'P-256' },
    signParams: { name: 'ECDSA', hash: 'SHA-256' },
  },
  'hmac-sha256': {
    importParams: { name: 'HMAC', hash: 'SHA-256' },
    signParams: { name: 'HMAC' },
  },
  'rsa-pss-sha512': {
    importParams: { name: 'RSA-PSS', hash: 'SHA-512' },
    signParams: { name: 'RSA-PSS', saltLength: 64 },
  },
  'rsa-v1_5-sha256': {
    importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    signParams: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

/** True when `name` is a supported RFC 9421 algorithm. */
export function isSignatureAlgorithm(name: unknown): name is SignatureAlgorithm {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(SPECS, name);
}

/** The RFC 9421 algorithm matching a WebCrypto key, or undefined. */
export function algorithmForCryptoKey(key: CryptoKey): SignatureAlgorithm | undefined {
  const a = key.algorithm as { name: string; namedCurve?: string; hash?: { name: string } };
  switch (a.name) {
    case 'Ed25519':
      return 'ed25519';
    case 'ECDSA':
      return a.namedCurve === 'P-256' ? 'ecdsa-p256-sha256' : undefined;
    case 'HMAC':
      return a.hash?.name === 'SHA-256' ? 'hmac-sha256' : undefined;
    case 'RSA-PSS':
      return a.hash?.name === 'SHA-512' ? 'rsa-pss-sha512' : undefined;
    case 'RSASSA-PKCS1-v1_5':
      return a.hash?.name === 'SHA-256' ? 'rsa-v1_5-sha256' : undefined;
    default:
      return undefined;
  }
}

const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  OKP: ['kty', 'crv', 'x'],
  EC: ['kty', 'crv', 'x', 'y'],
  RSA: ['kty', 'n', 'e'],
  oct: ['kty', 'k'],
};
const PRIVATE_MEMBERS: Record<string, readonly string[]> = {
  OKP: ['d'],
  EC: ['d'],
  RSA: ['d', 'p', 'q', 'dp', 'dq', 'qi'],
  oct: [],
};

/**
 * Imports a JWK for `alg`. Only the key material members are passed to WebCrypto (so `alg`,
 * `use`, `kid` labels do not interfere). `usage` picks the public or private half.
 *
 * @throws NexusError `request_invalid` when the key cannot be imported for `alg`.
 */
export async function importJwk(
  jwk: JsonWebKey & Record<string, unknown>,
  alg: SignatureAlgorithm,
  usage: 'sign' | 'verify',
  extractable = false,
): Promise<CryptoKey> {
  const kty = typeof jwk.kty === 'string' ? jwk.kty : '';
  const members = [
    ...(PUBLIC_MEMBERS[kty] ?? []),
    ...(usage === 'sign' || kty === 'oct' ? (PRIVATE_MEMBERS[kty] ?? []) : []),
  ];
  const clean: Record<string, unknown> = {};
  for (const m of members) if (jwk[m] !== undefined) clean[m] = jwk[m];
  const keyUsage: KeyUsage[] = kty === 'oct' ? ['sign', 'verify'] : [usage];
  try {
    return await subtle().importKey(
      'jwk',
      clean as JsonWebKey,
      SPECS[alg].importParams,
      extractable,
      keyUsage,
    );
  } catch (cause) {
    throw new NexusError('request_invalid', 'key cannot be used with this algorithm', { cause });
  }
}

/** Signs `data` with `key` using RFC 9421 algorithm `alg`. */
export async function signBytes(
  alg: SignatureAlgorithm,
  key: CryptoKey,
  data: Uint8Array,
): Promise<Uint8Array> {
  try {
    return new Uint8Array(await subtle().sign(SPECS[alg].signParams, key, bufferSource(data)));
  } catch (cause) {
    throw new NexusError('request_invalid', 'key cannot sign with this algorithm', { cause });
  }
}

/** Verifies `signature` over `data`; false on any failure (wrong key type included). */
export async function verifyBytes(
  alg: SignatureAlgorithm,
  key: CryptoKey,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (alg === 'ed25519' && signature.length !== 64) return false;
  if (alg === 'ecdsa-p256-sha256' && signature.length !== 64) return false;
  try {
    return await subtle().verify(
      SPECS[alg].signParams,
      key,
      bufferSource(signature),
      bufferSource(data),
    );
  } catch {
    return false;
  }
}
