// AES-256-GCM envelope encryption. Each record gets a fresh random 256-bit data key that
// encrypts the payload (random 96-bit IV; AAD binds the record context, e.g. credential
// name and version); the data key is wrapped by one master key version (AES-256-GCM,
// AAD binds that version). Rotating the master key re-wraps data keys only.
//
// Sealed format v1 (JSON, base64 fields, fixed key order):
//   {"v":1,"kv":<master key version>,"wiv":<12 B>,"wk":<32 B wrapped data key>,
//    "wtag":<16 B>,"iv":<12 B>,"ct":<payload>,"tag":<16 B>}
// MUST: any malformed, unknown-version or tampered blob fails with an error, never
// returns unauthenticated bytes.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { NexusError } from '@nexus-proxy/protocol';
import type { MasterKey } from './master-key.js';

/** The sealed-format version this code writes. */
export const SEALED_FORMAT_VERSION = 1;

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;

/** Looks up a master key by version (a `Keyring`'s `get`). */
export type MasterKeyLookup = (version: number) => MasterKey | undefined;

interface SealedV1 {
  v: 1;
  kv: number;
  wiv: string;
  wk: string;
  wtag: string;
  iv: string;
  ct: string;
  tag: string;
}

const wrapAad = (version: number): Buffer => Buffer.from(`nexus-vault/v1 wrap kv=${version}`);
const dataAad = (context: string): Buffer => Buffer.from(`nexus-vault/v1 data ${context}`);

function unavailable(reason: string, cause?: unknown): NexusError {
  return new NexusError('credential_unavailable', `sealed record cannot be opened: ${reason}`, {
    cause,
  });
}

function encrypt(key: Buffer, aad: Buffer, plaintext: Uint8Array) {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ct, tag: cipher.getAuthTag() };
}

function decrypt(key: Buffer, aad: Buffer, iv: Buffer, ct: Buffer, tag: Buffer): Buffer {
  const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ct), decipher.final()]);
}

function wrapDataKey(
  master: MasterKey,
  dataKey: Buffer,
): Pick<SealedV1, 'kv' | 'wiv' | 'wk' | 'wtag'> {
  const { iv, ct, tag } = encrypt(master.key, wrapAad(master.version), dataKey);
  return {
    kv: master.version,
    wiv: iv.toString('base64'),
    wk: ct.toString('base64'),
    wtag: tag.toString('base64'),
  };
}

function serialise(s: SealedV1): string {
  // Explicit key order: the format is stable byte for byte for equal inputs.
  return JSON.stringify({
    v: s.v,
    kv: s.kv,
    wiv: s.wiv,
    wk: s.wk,
    wtag: s.wtag,
    iv: s.iv,
    ct: s.ct,
    tag: s.tag,
  });
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function b64(value: unknown, length?: number): Buffer {
  if (typeof value !== 'string' || !B64.test(value)) throw unavailable('malformed');
  const bytes = Buffer.from(value, 'base64');
  if (length !== undefined && bytes.length !== length) throw unavailable('malformed');
  return bytes;
}

function parse(sealed: string): SealedV1 {
  let value: unknown;
  try {
    value = JSON.parse(sealed);
  } catch (error) {
    throw unavailable('malformed', error);
  }
  if (value === null || typeof value !== 'object') throw unavailable('malformed');
  const s = value as Record<string, unknown>;
  if (s.v !== SEALED_FORMAT_VERSION) throw unavailable('unsupported format version');
  if (typeof s.kv !== 'number' || !Number.isInteger(s.kv) || s.kv < 1) {
    throw unavailable('malformed');
  }
  for (const field of ['wiv', 'wk', 'wtag', 'iv', 'ct', 'tag']) {
    if (typeof s[field] !== 'string') throw unavailable('malformed');
  }
  return s as unknown as SealedV1;
}

function unwrapDataKey(lookup: MasterKeyLookup, s: SealedV1): Buffer {
  const master = lookup(s.kv);
  if (master === undefined) throw unavailable(`master key version ${s.kv} is not in the keyring`);
  try {
    return decrypt(
      master.key,
      wrapAad(s.kv),
      b64(s.wiv, IV_BYTES),
      b64(s.wk, DATA_KEY_BYTES),
      b64(s.wtag, TAG_BYTES),
    );
  } catch (error) {
    if (error instanceof NexusError) throw error;
    throw unavailable('data key authentication failed', error);
  }
}

/**
 * Seals `plaintext` under a fresh data key wrapped by `master`. `context` is bound as
 * AAD: opening with another context fails.
 *
 * @example
 * const sealed = sealEnvelope(keyring.current(), 'credential github 3', bytes);
 */
export function sealEnvelope(master: MasterKey, context: string, plaintext: Uint8Array): string {
  const dataKey = randomBytes(DATA_KEY_BYTES);
  try {
    const { iv, ct, tag } = encrypt(dataKey, dataAad(context), plaintext);
    return serialise({
      v: SEALED_FORMAT_VERSION,
      ...wrapDataKey(master, dataKey),
      iv: iv.toString('base64'),
      ct: ct.toString('base64'),
      tag: tag.toString('base64'),
    });
  } finally {
    dataKey.fill(0);
  }
}

/**
 * Opens a sealed blob. Throws `NexusError('credential_unavailable')` when it is
 * malformed, its master key version is unknown, or any authentication tag fails
 * (tampered blob, wrong master key, wrong context).
 */
export function openEnvelope(lookup: MasterKeyLookup, context: string, sealed: string): Buffer {
  const s = parse(sealed);
  const dataKey = unwrapDataKey(lookup, s);
  try {
    return decrypt(
      dataKey,
      dataAad(context),
      b64(s.iv, IV_BYTES),
      b64(s.ct),
      b64(s.tag, TAG_BYTES),
    );
  } catch (error) {
    if (error instanceof NexusError) throw error;
    throw unavailable('payload authentication failed', error);
  } finally {
    dataKey.fill(0);
  }
}

/**
 * Re-wraps the data key of `sealed` under `target` without touching the payload
 * (`iv`, `ct`, `tag` stay identical). Throws like `openEnvelope` if the current wrap
 * does not authenticate.
 */
export function rewrapEnvelope(lookup: MasterKeyLookup, sealed: string, target: MasterKey): string {
  const s = parse(sealed);
  const dataKey = unwrapDataKey(lookup, s);
  try {
    return serialise({ ...s, ...wrapDataKey(target, dataKey) });
  } finally {
    dataKey.fill(0);
  }
}

/** The master key version a sealed blob is wrapped with (throws if malformed). */
export function sealedKeyVersion(sealed: string): number {
  return parse(sealed).kv;
}
