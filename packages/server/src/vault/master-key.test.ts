// Master keyring: value parsing, key files (creation, permissions, reload), sources.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createKeyFile,
  formatMasterKey,
  keyringFromValue,
  loadKeyFile,
  loadKeyring,
  parseMasterKeyValue,
} from './master-key.js';

const root = mkdtempSync(join(tmpdir(), 'nexus-keys-'));
let n = 0;
const tempFile = (): string => join(root, `d${++n}`, 'master.key');
const posix = process.platform !== 'win32';

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

const b64 = (bytes = randomBytes(32)): string => bytes.toString('base64');

describe('parseMasterKeyValue', () => {
  it('reads a bare base64 key as version 1', () => {
    const key = randomBytes(32);
    expect(parseMasterKeyValue(key.toString('base64'))).toEqual([{ version: 1, key }]);
    expect(parseMasterKeyValue(key.toString('base64url'))).toEqual([{ version: 1, key }]);
  });

  it('reads several versions, newest first whatever the order', () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const keys = parseMasterKeyValue(`v1:${b64(a)}, v2:${b64(b)}`);
    expect(keys.map((k) => k.version)).toEqual([2, 1]);
    expect(keys[0]?.key).toEqual(b);
  });

  it.each([
    ['empty', ''],
    ['short key', b64(randomBytes(16))],
    ['long key', b64(randomBytes(33))],
    ['not base64', '***'],
    ['bare among several', `${b64()},v2:${b64()}`],
    ['duplicate version', `v1:${b64()},v1:${b64()}`],
    ['version zero', `v0:${b64()}`],
    ['bad prefix', `x1:${b64()}`],
  ])('refuses %s (master_key_invalid) without echoing the key', (_label, value) => {
    let caught: unknown;
    try {
      parseMasterKeyValue(value);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'master_key_invalid' });
    const message = (caught as Error).message;
    for (const part of value.split(/[,:]/)) {
      if (part.trim().length >= 8) expect(message).not.toContain(part.trim());
    }
  });
});

describe('key files', () => {
  it('creates a 0600 file in a new directory and loads it', () => {
    const path = tempFile();
    const key = createKeyFile(path);
    expect(key.version).toBe(1);
    if (posix) {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(statSync(join(path, '..')).mode & 0o077).toBe(0);
    }
    const ring = loadKeyFile(path);
    expect(ring.current()).toEqual(key);
    expect(ring.persistent).toBe(true);
    expect(ring.source).toContain(path);
  });

  it('refuses to overwrite an existing file', () => {
    const path = tempFile();
    createKeyFile(path);
    expect(() => createKeyFile(path)).toThrow(expect.objectContaining({ code: 'conflict' }));
  });

  it.runIf(posix)('refuses a key file readable by group or others', () => {
    const path = tempFile();
    createKeyFile(path);
    for (const mode of [0o640, 0o604, 0o660]) {
      chmodSync(path, mode);
      expect(() => loadKeyFile(path)).toThrow(
        expect.objectContaining({ code: 'master_key_insecure' }),
      );
    }
    chmodSync(path, 0o400);
    expect(loadKeyFile(path).current().version).toBe(1);
  });

  it('reports a missing or malformed file', () => {
    expect(() => loadKeyFile(join(root, 'nope.key'))).toThrow(
      expect.objectContaining({ code: 'master_key_missing' }),
    );
    const path = join(root, 'bad.key');
    writeFileSync(path, `# comment\n${b64()}\n`, { mode: 0o600 });
    expect(() => loadKeyFile(path)).toThrow(
      expect.objectContaining({ code: 'master_key_invalid' }),
    );
    writeFileSync(path, '# only comments\n\n', { mode: 0o600 });
    expect(() => loadKeyFile(path)).toThrow(
      expect.objectContaining({ code: 'master_key_invalid' }),
    );
  });

  it('adds a version atomically, keeping the file private', () => {
    const path = tempFile();
    const first = createKeyFile(path);
    const ring = loadKeyFile(path);
    const fresh = randomBytes(32);
    const added = ring.add(fresh);
    expect(added).toEqual({ version: 2, key: fresh });
    expect(ring.current()).toEqual(added);
    expect(ring.versions()).toEqual([2, 1]);
    if (posix) expect(statSync(path).mode & 0o777).toBe(0o600);
    const lines = readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('v'));
    expect(lines).toEqual([formatMasterKey(added), formatMasterKey(first)]);
  });

  it('reloads the file when it meets an unknown version', () => {
    const path = tempFile();
    createKeyFile(path);
    const a = loadKeyFile(path);
    const b = loadKeyFile(path);
    const added = b.add(randomBytes(32));
    expect(a.versions()).toEqual([1]);
    expect(a.get(added.version)).toEqual(added);
    expect(a.current()).toEqual(added);
    expect(a.get(99)).toBeUndefined();
  });
});

describe('loadKeyring', () => {
  it('prefers NEXUS_MASTER_KEY, then the key file, else master_key_missing', () => {
    const path = tempFile();
    const envKey = randomBytes(32);
    expect(() => loadKeyring({ envValue: undefined, keyFile: path })).toThrow(
      expect.objectContaining({ code: 'master_key_missing' }),
    );
    expect(() => loadKeyring({ envValue: '  ', keyFile: path })).toThrow(
      expect.objectContaining({ code: 'master_key_missing' }),
    );
    const fileKey = createKeyFile(path);
    expect(loadKeyring({ keyFile: path }).current()).toEqual(fileKey);
    const env = loadKeyring({ envValue: b64(envKey), keyFile: path });
    expect(env.current()).toEqual({ version: 1, key: envKey });
    expect(env.source).toBe('NEXUS_MASTER_KEY');
    expect(env.persistent).toBe(false);
  });

  it('does not let a value keyring add keys (the operator changes the variable)', () => {
    const ring = keyringFromValue(b64());
    expect(() => ring.add(randomBytes(32))).toThrow(expect.objectContaining({ code: 'conflict' }));
  });
});
