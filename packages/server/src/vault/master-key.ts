// The master keyring: versioned 32-byte keys that wrap the vault's data keys. Keys come
// from the NEXUS_MASTER_KEY value (passed in by the caller: nothing here reads
// process.env) or from a key file (default `.nexus/master.key`, mode 0600).
//
// Formats:
// - value: `<base64>` (version 1) or `v2:<base64>,v1:<base64>` (several versions);
// - key file: one `v<N>:<base64>` per line, newest first; blank lines and `#` comments ok.
// The newest key (highest version) wraps new data keys; older ones only unwrap.
// MUST NOT: put key material in an error message, a log line or a thrown value.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { NexusError } from '@nexus-proxy/protocol';
import { VaultError } from './errors.js';

/** Length of a master key in bytes (AES-256). */
export const MASTER_KEY_BYTES = 32;

/** The default key file, relative to the Nexus home directory. */
export const DEFAULT_KEY_FILE = '.nexus/master.key';

/** One master key version. `key` is secret: never log or serialise it. */
export interface MasterKey {
  readonly version: number;
  readonly key: Buffer;
}

/**
 * A set of master key versions. The vault wraps with `current()` and unwraps with
 * `get(version)`.
 */
export interface Keyring {
  /** Where the keys come from, for messages: `NEXUS_MASTER_KEY` or `key file <path>`. */
  readonly source: string;
  /** True when `add` persists the new key (key-file keyrings). */
  readonly persistent: boolean;
  /** The newest key. */
  current(): MasterKey;
  /**
   * The key of `version`. A key-file keyring re-reads its file once when the version is
   * unknown, so a running process picks up a key another process added (rotation).
   */
  get(version: number): MasterKey | undefined;
  /** Known versions, newest first. */
  versions(): number[];
  /**
   * Adds `key` as version `newest + 1` and makes it current. A key-file keyring writes
   * the file first (atomically, mode 0600), so the key is durable before anything is
   * wrapped with it; a value keyring refuses (`conflict`): the operator must change
   * NEXUS_MASTER_KEY instead.
   */
  add(key: Uint8Array): MasterKey;
}

/** A fresh random master key. */
export function generateMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES);
}

/** Formats one key as a `v<N>:<base64>` entry. The result is secret. */
export function formatMasterKey(key: MasterKey): string {
  return `v${key.version}:${key.key.toString('base64')}`;
}

const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+)$/;
const ENTRY = /^v([1-9][0-9]{0,8}):(.+)$/;

function decodeKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  const key = BASE64.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (key.length !== MASTER_KEY_BYTES) {
    throw new VaultError(
      'master_key_invalid',
      `${where} is not a base64 encoding of ${MASTER_KEY_BYTES} bytes`,
    );
  }
  return key;
}

/** Parses entries; newest (highest version) first; duplicate versions are an error. */
function parseEntries(
  entries: { text: string; where: string }[],
  source: string,
  allowBare: boolean,
): MasterKey[] {
  if (entries.length === 0) {
    throw new VaultError('master_key_invalid', `${source} holds no master key`);
  }
  const keys: MasterKey[] = [];
  for (const { text, where } of entries) {
    const match = ENTRY.exec(text);
    if (match === null) {
      if (allowBare && entries.length === 1) {
        keys.push({ version: 1, key: decodeKey(text, where) });
        continue;
      }
      throw new VaultError('master_key_invalid', `${where} is not of the form v<N>:<base64>`);
    }
    const version = Number(match[1]);
    if (keys.some((k) => k.version === version)) {
      throw new VaultError('master_key_invalid', `${source} has version ${version} twice`);
    }
    keys.push({ version, key: decodeKey(match[2] ?? '', where) });
  }
  return keys.sort((a, b) => b.version - a.version);
}

/**
 * Parses a NEXUS_MASTER_KEY value: `<base64>` (version 1) or `v2:<base64>,v1:<base64>`.
 * Throws `master_key_invalid` (the message names the entry, never its content).
 */
export function parseMasterKeyValue(value: string, source = 'NEXUS_MASTER_KEY'): MasterKey[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return parseEntries(
    items.map((text, i) => ({ text, where: `${source} entry ${i + 1}` })),
    source,
    true,
  );
}

function parseKeyFileText(text: string, source: string): MasterKey[] {
  const entries: { text: string; where: string }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    entries.push({ text: trimmed, where: `${source} line ${i + 1}` });
  });
  return parseEntries(entries, source, false);
}

/** Reads and checks a key file: a regular file, not accessible to group or others. */
function readKeyFile(path: string): MasterKey[] {
  const source = `key file ${path}`;
  let info;
  try {
    info = statSync(path);
  } catch (error) {
    throw new VaultError('master_key_missing', `${source} does not exist`, { cause: error });
  }
  if (!info.isFile()) throw new VaultError('master_key_invalid', `${source} is not a file`);
  // MUST refuse a key any other local user could read (POSIX only; Windows uses ACLs).
  if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
    throw new VaultError(
      'master_key_insecure',
      `${source} is accessible by group or others; run: chmod 600 ${path}`,
    );
  }
  return parseKeyFileText(readFileSync(path, 'utf8'), source);
}

/** Writes `text` to `path` atomically with mode 0600 (temp file, fsync, rename). */
function writePrivateFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (error) {
    unlinkSync(tmp);
    throw error;
  }
  try {
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // Directory fsync is not supported everywhere (Windows); the rename is done.
  }
}

function keyFileText(keys: MasterKey[]): string {
  return (
    '# Nexus master keys, newest first. Keep this file secret (mode 0600) and backed up:\n' +
    '# without it the vault cannot be opened.\n' +
    keys.map((k) => `${formatMasterKey(k)}\n`).join('')
  );
}

class StaticKeyring implements Keyring {
  readonly source: string;
  readonly persistent: boolean = false;
  protected keys: MasterKey[];

  constructor(source: string, keys: MasterKey[]) {
    this.source = source;
    this.keys = keys;
  }

  current(): MasterKey {
    const key = this.keys[0];
    if (key === undefined) throw new VaultError('master_key_missing', `${this.source} is empty`);
    return key;
  }

  get(version: number): MasterKey | undefined {
    return this.keys.find((k) => k.version === version);
  }

  versions(): number[] {
    return this.keys.map((k) => k.version);
  }

  add(_key: Uint8Array): MasterKey {
    throw new NexusError(
      'conflict',
      `the master key comes from ${this.source}: put the new key first there (v<N+1>:<base64>,...) and restart, then rotate`,
    );
  }
}

class FileKeyring extends StaticKeyring {
  override readonly persistent = true;
  readonly path: string;

  constructor(path: string) {
    super(`key file ${path}`, readKeyFile(path));
    this.path = path;
  }

  override get(version: number): MasterKey | undefined {
    const known = super.get(version);
    if (known !== undefined) return known;
    try {
      this.keys = readKeyFile(this.path);
    } catch {
      // Keep working with the keys we have; the problem surfaces at the next start-up.
      return undefined;
    }
    return super.get(version);
  }

  override add(key: Uint8Array): MasterKey {
    if (key.length !== MASTER_KEY_BYTES) {
      throw new VaultError('master_key_invalid', `a master key must be ${MASTER_KEY_BYTES} bytes`);
    }
    // Re-read first: another process may have added a version meanwhile.
    const keys = readKeyFile(this.path);
    const added: MasterKey = {
      version: (keys[0]?.version ?? 0) + 1,
      key: Buffer.from(key),
    };
    writePrivateFileAtomic(this.path, keyFileText([added, ...keys]));
    this.keys = [added, ...keys];
    return added;
  }
}

/**
 * A keyring from a NEXUS_MASTER_KEY value (see `parseMasterKeyValue`). Not persistent.
 *
 * @example
 * const keyring = keyringFromValue(env.NEXUS_MASTER_KEY);
 */
export function keyringFromValue(value: string, source = 'NEXUS_MASTER_KEY'): Keyring {
  return new StaticKeyring(source, parseMasterKeyValue(value, source));
}

/**
 * A keyring from a key file. Throws `master_key_missing` (no file), `master_key_insecure`
 * (group/other permission bits set) or `master_key_invalid` (malformed).
 */
export function loadKeyFile(path: string): Keyring {
  return new FileKeyring(path);
}

/**
 * Creates a key file holding one fresh (or the given) key as version 1, mode 0600,
 * creating the directory (0700). Refuses to overwrite an existing file (`conflict`).
 *
 * @example
 * createKeyFile(join(home, '.nexus/master.key'));
 */
export function createKeyFile(path: string, key: Uint8Array = generateMasterKey()): MasterKey {
  if (key.length !== MASTER_KEY_BYTES) {
    throw new VaultError('master_key_invalid', `a master key must be ${MASTER_KEY_BYTES} bytes`);
  }
  if (existsSync(path)) {
    throw new NexusError('conflict', `key file ${path} exists already; not overwriting it`);
  }
  const first: MasterKey = { version: 1, key: Buffer.from(key) };
  writePrivateFileAtomic(path, keyFileText([first]));
  return first;
}

/** Where to look for the master key. */
export interface KeyringSources {
  /** The NEXUS_MASTER_KEY value, if set; it wins over the key file. */
  envValue?: string | undefined;
  /** The key file path (usually `<home>/.nexus/master.key`). */
  keyFile: string;
}

/**
 * Loads the keyring: NEXUS_MASTER_KEY when set (non-empty), else the key file, else
 * `master_key_missing` naming both sources.
 *
 * @example
 * const keyring = loadKeyring({ envValue: env.NEXUS_MASTER_KEY, keyFile: '/srv/.nexus/master.key' });
 */
export function loadKeyring(sources: KeyringSources): Keyring {
  if (sources.envValue !== undefined && sources.envValue.trim() !== '') {
    return keyringFromValue(sources.envValue);
  }
  if (!existsSync(sources.keyFile)) {
    throw new VaultError(
      'master_key_missing',
      `no master key: NEXUS_MASTER_KEY is not set and key file ${sources.keyFile} does not exist (run nexus init)`,
    );
  }
  return loadKeyFile(sources.keyFile);
}
