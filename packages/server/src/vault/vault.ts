// The vault: credentials encrypted at rest with a write-only API. Operators set, rotate,
// delete and list credentials; no method returns a value except `resolve`, which is
// INTERNAL to the proxy pipeline (mechanics) and MUST NOT be reachable from the admin
// API, the CLI output, logs or audit records.
//
// Caching: none. Every `resolve` unwraps the data key and decrypts the payload again
// (two AES-GCM operations on a few hundred bytes: microseconds). Caching decrypted data
// keys or values would keep secret material in memory longer, and would need
// invalidation on rotate/delete/master-key rotation across processes; mechanics that
// derive tokens (OAuth2, GitHub App) cache those tokens themselves.
import { NexusError } from '@nexus-proxy/protocol';
import { VaultError } from './errors.js';
import { openEnvelope, rewrapEnvelope, sealEnvelope, sealedKeyVersion } from './envelope.js';
import type { Keyring, MasterKey } from './master-key.js';
import type { CredentialMeta, SealedReplacement, Store } from '../store/store.js';

/** Credential names: lowercase, digits, `.`, `_`, `-`; 1..128 characters. */
export const CREDENTIAL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;
/** Field names inside a credential (e.g. `token`, `client_id`, `private_key`). */
export const FIELD_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
/** Purposes of internal seals (e.g. `authority-key:<kid>`). */
export const SEAL_PURPOSE_PATTERN = /^[a-z0-9][a-z0-9._:-]{0,127}$/;
/** At most this many fields per credential. */
export const MAX_FIELDS = 32;
/** At most this many bytes (UTF-8) per field value. */
export const MAX_FIELD_BYTES = 64 * 1024;

/** Meta key of the master-key check values. */
export const KEY_CHECK_META = 'vault.key_check';
const KEY_CHECK_CONTEXT = 'key-check';
const KEY_CHECK_PLAINTEXT = 'nexus vault key check v1';

/** Options of `createVault`. */
export interface VaultOptions {
  store: Store;
  keyring: Keyring;
  /** Milliseconds since the epoch. */
  clock: () => number;
  /**
   * How long `resolve` may reuse a decrypted credential (default 1000 ms; 0: never).
   * Writes through this vault (set, rotate, delete, master key rotation) drop it at once;
   * the lifetime bounds how late a write by another process sharing the store is seen.
   */
  resolveCacheMs?: number;
}

/** What a write returns: never a value. */
export interface CredentialWriteResult {
  name: string;
  version: number;
  fieldNames: string[];
}

/** A decrypted credential. INTERNAL: only the proxy pipeline may hold one. */
export interface ResolvedCredential {
  name: string;
  version: number;
  fields: Readonly<Record<string, string>>;
}

/** Outcome of `rotateMasterKey`. */
export interface MasterKeyRotation {
  /** The master key version every sealed blob is now wrapped with. */
  version: number;
  /** Sealed blobs re-wrapped (the rest were already on `version`). */
  rewrapped: number;
  /** Sealed blobs seen. */
  total: number;
}

/** The vault API. Every method awaits `init()` first (memoised). */
export interface Vault {
  /**
   * Verifies the keyring against the store's key check (`master_key_mismatch` naming
   * the key source), or writes the check on a fresh store. Idempotent.
   */
  init(): Promise<void>;
  /** Writes a new version of `name` (creating it). Returns metadata only. */
  set(name: string, fields: Record<string, string>): Promise<CredentialWriteResult>;
  /** Writes a new version of an existing credential (`not_found` otherwise). */
  rotate(name: string, fields: Record<string, string>): Promise<CredentialWriteResult>;
  /** Deletes the credential and erases its sealed values (`not_found` if unknown). */
  delete(name: string): Promise<void>;
  /** Metadata of every credential. Never a value. */
  list(): Promise<CredentialMeta[]>;
  /** Metadata of one credential, or `undefined`. Never a value. */
  describe(name: string): Promise<CredentialMeta | undefined>;
  /**
   * INTERNAL (proxy pipeline only): decrypts the current version. Missing or unreadable
   * -> `credential_unavailable`. The result MUST NOT leave the process. `fresh` reads
   * the store even when a decrypted copy is cached (another node may have written it).
   */
  resolve(name: string, options?: { fresh?: boolean }): Promise<ResolvedCredential>;
  /** INTERNAL: seals another secret (e.g. an Authority private key) for `purpose`. */
  seal(purpose: string, plaintext: Uint8Array): Promise<string>;
  /** INTERNAL: opens what `seal(purpose, ...)` sealed (`credential_unavailable` on failure). */
  open(purpose: string, sealed: string): Promise<Buffer>;
  /**
   * Re-wraps every data key in the store (credentials and signing keys) under the
   * newest master key in ONE store transaction, without re-encrypting payloads. With
   * `newKey`, first adds it to the keyring as the next version (a key-file keyring
   * writes the file before anything is wrapped with it). Other processes keep working:
   * their key-file keyring reloads when it meets the new version. Keep old versions in
   * the key file until every process has restarted or reloaded.
   */
  rotateMasterKey(newKey?: Uint8Array): Promise<MasterKeyRotation>;
}

const credentialContext = (name: string, version: number): string =>
  `credential ${name} ${version}`;
const secretContext = (purpose: string): string => `secret ${purpose}`;

function validateName(name: string): void {
  if (typeof name !== 'string' || !CREDENTIAL_NAME_PATTERN.test(name)) {
    throw new NexusError(
      'validation_failed',
      'credential name must match ^[a-z0-9][a-z0-9._-]{0,127}$',
    );
  }
}

/** Validates fields; returns the sorted field names. Messages never include a value. */
function validateFields(fields: Record<string, string>): string[] {
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
    throw new NexusError('validation_failed', 'credential fields must be an object of strings');
  }
  const names = Object.keys(fields).sort();
  if (names.length === 0 || names.length > MAX_FIELDS) {
    throw new NexusError('validation_failed', `a credential has 1 to ${MAX_FIELDS} fields`);
  }
  for (const field of names) {
    if (!FIELD_NAME_PATTERN.test(field)) {
      throw new NexusError(
        'validation_failed',
        'credential field names must match ^[A-Za-z][A-Za-z0-9_.-]{0,63}$',
      );
    }
    const value = fields[field];
    if (typeof value !== 'string' || value === '') {
      throw new NexusError(
        'validation_failed',
        `credential field ${field} must be a non-empty string`,
      );
    }
    if (Buffer.byteLength(value, 'utf8') > MAX_FIELD_BYTES) {
      throw new NexusError(
        'validation_failed',
        `credential field ${field} is over ${MAX_FIELD_BYTES} bytes`,
      );
    }
  }
  return names;
}

function validatePurpose(purpose: string): void {
  if (typeof purpose !== 'string' || !SEAL_PURPOSE_PATTERN.test(purpose)) {
    throw new NexusError(
      'validation_failed',
      'seal purpose must match ^[a-z0-9][a-z0-9._:-]{0,127}$',
    );
  }
}

/** Key checks: one sealed constant per master key version. */
interface KeyChecks {
  v: 1;
  checks: Record<string, string>;
}

function parseChecks(raw: string): KeyChecks {
  try {
    const value = JSON.parse(raw) as KeyChecks;
    if (value.v === 1 && value.checks !== null && typeof value.checks === 'object') return value;
  } catch {
    // Falls through to the error below.
  }
  throw new VaultError('master_key_mismatch', 'the vault key check in the store is corrupt');
}

const makeCheck = (key: MasterKey): string =>
  sealEnvelope(key, KEY_CHECK_CONTEXT, Buffer.from(KEY_CHECK_PLAINTEXT));

/**
 * Creates the vault over a store and a keyring.
 *
 * @example
 * const vault = createVault({ store, keyring: loadKeyring({ envValue, keyFile }), clock: Date.now });
 * await vault.init(); // master_key_mismatch if the key does not fit this store
 * await vault.set('github-token', { token: value });
 */
export function createVault(options: VaultOptions): Vault {
  const { store, keyring, clock } = options;
  const lookup = (version: number): MasterKey | undefined => keyring.get(version);
  // Decrypted credentials for `resolve`: every proxied request resolves one, and reading
  // and opening the envelope (a store read and two AES-GCM decryptions) was 8% of the
  // proxy's main-thread time. The plaintext is in this process's memory for every request
  // anyway (and derived tokens are cached for their lifetime); this keeps it for at most
  // `resolveCacheMs` more. Generation-guarded: a resolve that raced a write is not cached.
  const cacheMs = Math.max(0, options.resolveCacheMs ?? 1000);
  const resolved = new Map<string, { value: ResolvedCredential; until: number }>();
  let generation = 0;
  const forget = (): void => {
    generation++;
    resolved.clear();
  };
  let ready: Promise<void> | undefined;

  /** Verifies the keyring against the stored checks and records checks for new versions. */
  async function verifyKeyring(): Promise<void> {
    const raw = await store.getMeta(KEY_CHECK_META);
    const versions = keyring.versions();
    if (raw === undefined) {
      const checks: Record<string, string> = {};
      for (const v of versions) {
        const key = keyring.get(v);
        if (key !== undefined) checks[String(v)] = makeCheck(key);
      }
      await store.setMeta(KEY_CHECK_META, JSON.stringify({ v: 1, checks }));
      return;
    }
    const stored = parseChecks(raw);
    const common = versions.filter((v) => stored.checks[String(v)] !== undefined);
    if (common.length === 0) {
      throw new VaultError(
        'master_key_mismatch',
        `the master key from ${keyring.source} does not match this store (no key version in common)`,
      );
    }
    for (const v of common) {
      let ok = false;
      try {
        const opened = openEnvelope(lookup, KEY_CHECK_CONTEXT, stored.checks[String(v)] ?? '');
        ok = opened.toString() === KEY_CHECK_PLAINTEXT;
      } catch {
        ok = false;
      }
      if (!ok) {
        throw new VaultError(
          'master_key_mismatch',
          `the master key version ${v} from ${keyring.source} does not open this store's vault`,
        );
      }
    }
    await addMissingChecks(stored);
  }

  /** Records a check for every keyring version the store has none for yet. */
  async function addMissingChecks(stored: KeyChecks): Promise<void> {
    let changed = false;
    for (const v of keyring.versions()) {
      const key = keyring.get(v);
      if (stored.checks[String(v)] === undefined && key !== undefined) {
        stored.checks[String(v)] = makeCheck(key);
        changed = true;
      }
    }
    if (changed) await store.setMeta(KEY_CHECK_META, JSON.stringify(stored));
  }

  function init(): Promise<void> {
    if (ready === undefined) {
      ready = verifyKeyring().catch((error: unknown) => {
        ready = undefined; // a later call may retry (e.g. after the operator fixed the key)
        throw error;
      });
    }
    return ready;
  }

  async function write(
    name: string,
    fields: Record<string, string>,
  ): Promise<CredentialWriteResult> {
    validateName(name);
    const fieldNames = validateFields(fields);
    await init();
    const ordered: Record<string, string> = {};
    for (const f of fieldNames) ordered[f] = fields[f] as string;
    const plaintext = Buffer.from(JSON.stringify({ fields: ordered }), 'utf8');
    forget();
    try {
      const master = keyring.current();
      const row = await store.putCredentialVersion(name, {
        fieldNames,
        createdAt: clock(),
        seal: (version) => sealEnvelope(master, credentialContext(name, version), plaintext),
      });
      return { name: row.name, version: row.version, fieldNames: row.fieldNames };
    } finally {
      forget();
      plaintext.fill(0);
    }
  }

  /** Reads and opens the current version of a credential. */
  async function decrypt(name: string): Promise<ResolvedCredential> {
    // The safe details name the credential (configuration), never a value: the agent and
    // the audit get them (NexusErrorOptions.detail).
    const unusable = (what: string, cause?: unknown) =>
      new NexusError('credential_unavailable', `credential ${name} ${what}`, {
        detail: `credential "${name}" ${what}`,
        cause,
      });
    const row = await store.getCredential(name);
    if (row === undefined) {
      throw unusable('is not set');
    }
    let plaintext: Buffer;
    try {
      plaintext = openEnvelope(lookup, credentialContext(row.name, row.version), row.sealed);
    } catch (err) {
      throw unusable("cannot be decrypted with the node's master keys", err);
    }
    try {
      const parsed = JSON.parse(plaintext.toString('utf8')) as { fields?: unknown };
      const fields = parsed.fields;
      if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
        throw unusable('payload is malformed');
      }
      const copy: Record<string, string> = {};
      for (const [k, v] of Object.entries(fields as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw unusable('payload is malformed');
        }
        copy[k] = v;
      }
      return Object.freeze({ name: row.name, version: row.version, fields: Object.freeze(copy) });
    } finally {
      plaintext.fill(0);
    }
  }

  return {
    init,

    set: write,

    async rotate(name, fields) {
      validateName(name);
      await init();
      if ((await store.getCredential(name)) === undefined) {
        throw new NexusError('not_found', `credential ${name} is not set`);
      }
      return write(name, fields);
    },

    async delete(name) {
      validateName(name);
      await init();
      forget();
      try {
        await store.deleteCredential(name, clock());
      } finally {
        forget();
      }
    },

    async list() {
      await init();
      return store.listCredentials();
    },

    async describe(name) {
      await init();
      const row = await store.getCredential(name);
      if (row === undefined) return undefined;
      // MUST NOT return the sealed payload either.
      return {
        name: row.name,
        version: row.version,
        fieldNames: row.fieldNames,
        createdAt: row.createdAt,
        updatedAt: row.updatedAt,
      };
    },

    async resolve(name, resolveOptions) {
      const hit = resolved.get(name);
      if (hit !== undefined && clock() < hit.until && resolveOptions?.fresh !== true) {
        return hit.value;
      }
      await init();
      const at = generation;
      const value = await decrypt(name);
      if (cacheMs > 0 && at === generation) resolved.set(name, { value, until: clock() + cacheMs });
      return value;
    },

    async seal(purpose, plaintext) {
      validatePurpose(purpose);
      await init();
      return sealEnvelope(keyring.current(), secretContext(purpose), plaintext);
    },

    async open(purpose, sealed) {
      validatePurpose(purpose);
      await init();
      return openEnvelope(lookup, secretContext(purpose), sealed);
    },

    async rotateMasterKey(newKey) {
      await init();
      // The key is durable (key file written) before anything is wrapped with it.
      const target = newKey === undefined ? keyring.current() : keyring.add(newKey);
      const raw = await store.getMeta(KEY_CHECK_META);
      await addMissingChecks(raw === undefined ? { v: 1, checks: {} } : parseChecks(raw));
      const records = await store.listAllSealed();
      const replacements: SealedReplacement[] = [];
      for (const record of records) {
        if (sealedKeyVersion(record.sealed) === target.version) continue;
        // Any unreadable blob aborts the rotation before anything is written.
        replacements.push({
          ref: record.ref,
          previous: record.sealed,
          sealed: rewrapEnvelope(lookup, record.sealed, target),
        });
      }
      const rewrapped = await store.replaceSealed(replacements);
      return { version: target.version, rewrapped, total: records.length };
    },
  };
}
