// The vault over a real SQLite store: round trip, write-only listing, tamper detection,
// master key checks, master-key rotation across processes, no plaintext on disk.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import { createKeyFile, keyringFromValue, loadKeyFile, type Keyring } from './master-key.js';
import { createVault, KEY_CHECK_META, type Vault } from './vault.js';

const root = mkdtempSync(join(tmpdir(), 'nexus-vault-'));
let n = 0;
const newDir = (): string => {
  const dir = join(root, `v${++n}`);
  mkdirSync(dir, { recursive: true });
  return dir;
};
const b64 = (bytes: Buffer): string => bytes.toString('base64');
let now = 1_700_000_000_000;
const clock = (): number => ++now;

const open: SqliteStore[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function setup(
  keyring: Keyring,
  dir = newDir(),
): { store: SqliteStore; vault: Vault; dir: string } {
  const store = openSqliteStore(join(dir, 'nexus.db'));
  open.push(store);
  return { store, vault: createVault({ store, keyring, clock }), dir };
}

const valueKeyring = (...keys: Buffer[]): Keyring =>
  keyringFromValue(keys.map((k, i) => `v${keys.length - i}:${b64(k)}`).join(','));

const codeOf = async (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e as { code?: unknown }).code,
  );

describe('vault', () => {
  it('sets, resolves and versions credentials', async () => {
    const { vault } = setup(valueKeyring(randomBytes(32)));
    await vault.init();
    expect(await vault.set('github-token', { token: 'ghp_AAAA' })).toEqual({
      name: 'github-token',
      version: 1,
      fieldNames: ['token'],
    });
    expect(await vault.resolve('github-token')).toEqual({
      name: 'github-token',
      version: 1,
      fields: { token: 'ghp_AAAA' },
    });
    const rotated = await vault.rotate('github-token', { token: 'ghp_BBBB', user: 'bot' });
    expect(rotated).toEqual({ name: 'github-token', version: 2, fieldNames: ['token', 'user'] });
    const resolved = await vault.resolve('github-token');
    expect(resolved.fields).toEqual({ token: 'ghp_BBBB', user: 'bot' });
    expect(Object.isFrozen(resolved.fields)).toBe(true);
    expect(await codeOf(vault.rotate('unknown', { token: 'x' }))).toBe('not_found');
    expect(await codeOf(vault.resolve('unknown'))).toBe('credential_unavailable');
  });

  it('lists and describes metadata only, never a value', async () => {
    const { vault } = setup(valueKeyring(randomBytes(32)));
    await vault.set('b-cred', { token: 'VALUE-ONE-1234' });
    await vault.set('a-cred', { client_id: 'VALUE-TWO-1234', client_secret: 'VALUE-THREE-1234' });
    const list = await vault.list();
    expect(list.map((c) => [c.name, c.version, c.fieldNames])).toEqual([
      ['a-cred', 1, ['client_id', 'client_secret']],
      ['b-cred', 1, ['token']],
    ]);
    const described = await vault.describe('a-cred');
    for (const item of [...list, described]) {
      expect(Object.keys(item ?? {}).sort()).toEqual([
        'createdAt',
        'fieldNames',
        'name',
        'updatedAt',
        'version',
      ]);
    }
    const text = JSON.stringify([list, described]);
    expect(text).not.toMatch(/VALUE-/);
    expect(await vault.describe('nope')).toBeUndefined();
  });

  it('deletes: the value is gone, the name can be set again', async () => {
    const { vault, store } = setup(valueKeyring(randomBytes(32)));
    await vault.set('c', { token: 'x1' });
    await vault.delete('c');
    expect(await codeOf(vault.resolve('c'))).toBe('credential_unavailable');
    expect(await vault.list()).toEqual([]);
    expect(await codeOf(vault.delete('c'))).toBe('not_found');
    expect(await store.listAllSealed()).toEqual([]);
    expect((await vault.set('c', { token: 'x2' })).version).toBe(2);
    expect((await vault.resolve('c')).fields).toEqual({ token: 'x2' });
  });

  it.each([
    ['name with capitals', 'GitHub', { token: 'x' }],
    ['name starting with a dot', '.hidden', { token: 'x' }],
    ['name too long', 'a'.repeat(129), { token: 'x' }],
    ['no fields', 'ok', {}],
    ['empty value', 'ok', { token: '' }],
    ['bad field name', 'ok', { 'bad field': 'x' }],
    ['non-string value', 'ok', { token: 5 as unknown as string }],
    ['value too large', 'ok', { token: 'x'.repeat(64 * 1024 + 1) }],
  ])('refuses %s (validation_failed)', async (_label, name, fields) => {
    const { vault } = setup(valueKeyring(randomBytes(32)));
    expect(await codeOf(vault.set(name, fields))).toBe('validation_failed');
  });

  it('detects a tampered or swapped sealed value (error, not garbage)', async () => {
    const { vault, dir } = setup(valueKeyring(randomBytes(32)));
    await vault.set('alpha', { token: 'alpha-secret' });
    await vault.set('beta', { token: 'beta-secret' });
    const raw = new Database(join(dir, 'nexus.db'));
    try {
      const get = raw.prepare(
        'SELECT sealed FROM credential_versions WHERE name = ? AND sealed IS NOT NULL',
      );
      const set = raw.prepare('UPDATE credential_versions SET sealed = ? WHERE name = ?');
      const alpha = (get.get('alpha') as { sealed: string }).sealed;
      const parsed = JSON.parse(alpha) as Record<string, string>;
      const ct = Buffer.from(parsed.ct ?? '', 'base64');
      ct[0] = (ct[0] ?? 0) ^ 0x80;
      set.run(JSON.stringify({ ...parsed, ct: ct.toString('base64') }), 'alpha');
      expect(await codeOf(vault.resolve('alpha'))).toBe('credential_unavailable');
      // A valid blob moved to another name does not open there (AAD binds the name).
      set.run(alpha, 'beta');
      expect(await codeOf(vault.resolve('beta'))).toBe('credential_unavailable');
    } finally {
      raw.close();
    }
  });

  it('reuses a resolved credential briefly; writes through the vault take effect at once', async () => {
    const dir = newDir();
    const store = openSqliteStore(join(dir, 'nexus.db'));
    open.push(store);
    const keyring = valueKeyring(randomBytes(32));
    let t = 1_000_000;
    const vault = createVault({ store, keyring, clock: () => t, resolveCacheMs: 1000 });
    await vault.set('c', { token: 'v1-secret' });
    expect((await vault.resolve('c')).fields.token).toBe('v1-secret');
    await vault.rotate('c', { token: 'v2-secret' });
    expect((await vault.resolve('c')).fields).toEqual({ token: 'v2-secret' });
    await vault.delete('c');
    expect(await codeOf(vault.resolve('c'))).toBe('credential_unavailable');
    await vault.set('c', { token: 'v3-secret' });
    expect((await vault.resolve('c')).fields.token).toBe('v3-secret');

    // A write by another process sharing the store (a second vault here) is seen once the
    // cached value's lifetime is over, not before.
    const other = createVault({ store, keyring, clock: () => t });
    await other.rotate('c', { token: 'v4-secret' });
    t += 999;
    expect((await vault.resolve('c')).fields.token).toBe('v3-secret');
    t += 1;
    expect((await vault.resolve('c')).fields.token).toBe('v4-secret');
    await other.delete('c');
    t += 1000;
    expect(await codeOf(vault.resolve('c'))).toBe('credential_unavailable');

    // resolveCacheMs 0: every resolve reads the store.
    const uncached = createVault({ store, keyring, clock: () => t, resolveCacheMs: 0 });
    await other.set('d', { token: 'd1-secret' });
    expect((await uncached.resolve('d')).fields.token).toBe('d1-secret');
    await other.rotate('d', { token: 'd2-secret' });
    expect((await uncached.resolve('d')).fields.token).toBe('d2-secret');
  });

  it('seals and opens internal secrets bound to their purpose', async () => {
    const { vault } = setup(valueKeyring(randomBytes(32)));
    const pkcs8 = randomBytes(48);
    const sealed = await vault.seal('authority-key:k1', pkcs8);
    expect(await vault.open('authority-key:k1', sealed)).toEqual(pkcs8);
    expect(await codeOf(vault.open('authority-key:k2', sealed))).toBe('credential_unavailable');
    expect(await codeOf(vault.seal('Bad Purpose', pkcs8))).toBe('validation_failed');
  });
});

describe('vault master key checks', () => {
  it('writes the key check on a fresh store and accepts the same key again', async () => {
    const key = randomBytes(32);
    const { store, vault, dir } = setup(valueKeyring(key));
    await vault.init();
    await vault.init();
    expect(await store.getMeta(KEY_CHECK_META)).toBeDefined();
    await vault.set('c', { token: 'v' });
    await store.close();
    const again = setup(valueKeyring(key), dir);
    await again.vault.init();
    expect((await again.vault.resolve('c')).fields).toEqual({ token: 'v' });
  });

  it('refuses a wrong master key at init (master_key_mismatch), never echoing it', async () => {
    const { vault, store, dir } = setup(valueKeyring(randomBytes(32)));
    await vault.set('c', { token: 'v' });
    await store.close();
    const wrongKey = randomBytes(32);
    const wrong = setup(valueKeyring(wrongKey), dir);
    let caught: unknown;
    try {
      await wrong.vault.init();
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'master_key_mismatch' });
    expect((caught as Error).message).toContain('NEXUS_MASTER_KEY');
    expect((caught as Error).message).not.toContain(b64(wrongKey));
    // Every other method refuses too.
    expect(await codeOf(wrong.vault.resolve('c'))).toBe('master_key_mismatch');
    expect(await codeOf(wrong.vault.set('d', { token: 'v' }))).toBe('master_key_mismatch');
  });

  it('refuses a keyring with no version in common with the store', async () => {
    const { vault, store, dir } = setup(valueKeyring(randomBytes(32)));
    await vault.init();
    await store.close();
    const other = setup(keyringFromValue(`v7:${b64(randomBytes(32))}`), dir);
    expect(await codeOf(other.vault.init())).toBe('master_key_mismatch');
  });

  it('names the key file when the key file is the source', async () => {
    const dir = newDir();
    const keyPath = join(dir, 'master.key');
    createKeyFile(keyPath);
    const first = setup(loadKeyFile(keyPath), dir);
    await first.vault.init();
    await first.store.close();
    rmSync(keyPath);
    createKeyFile(keyPath);
    const second = setup(loadKeyFile(keyPath), dir);
    await expect(second.vault.init()).rejects.toMatchObject({ code: 'master_key_mismatch' });
    await expect(second.vault.init()).rejects.toThrow(keyPath);
  });
});

describe('master key rotation', () => {
  it('re-wraps every data key in one go, keeps every credential readable, payloads untouched', async () => {
    const dir = newDir();
    const keyPath = join(dir, 'master.key');
    createKeyFile(keyPath);
    const { vault, store } = setup(loadKeyFile(keyPath), dir);
    const names = ['one', 'two', 'three'];
    for (const name of names) await vault.set(name, { token: `${name}-secret` });
    await vault.set('one', { token: 'one-secret-v2' });
    const keySealed = await vault.seal('authority-key:k1', Buffer.from('private-key-bytes'));
    await store.insertSigningKey({
      kid: 'k1',
      alg: 'EdDSA',
      publicJwk: { kty: 'OKP' },
      privateKeyEnc: keySealed,
      createdAt: clock(),
    });
    const before = await store.listAllSealed();

    // A second process with its own connection and keyring, loaded before the rotation.
    const otherStore = openSqliteStore(join(dir, 'nexus.db'));
    open.push(otherStore);
    const otherVault = createVault({ store: otherStore, keyring: loadKeyFile(keyPath), clock });
    await otherVault.init();

    const result = await vault.rotateMasterKey(randomBytes(32));
    expect(result).toEqual({ version: 2, rewrapped: 4, total: 4 });

    const after = await store.listAllSealed();
    expect(after).toHaveLength(before.length);
    for (const b of before) {
      const a = after.find((x) => JSON.stringify(x.ref) === JSON.stringify(b.ref));
      const pb = JSON.parse(b.sealed) as Record<string, unknown>;
      const pa = JSON.parse(a?.sealed ?? '{}') as Record<string, unknown>;
      expect(pb.kv).toBe(1);
      expect(pa.kv).toBe(2);
      expect(pa.wk).not.toBe(pb.wk);
      expect([pa.iv, pa.ct, pa.tag]).toEqual([pb.iv, pb.ct, pb.tag]);
    }
    for (const name of names) {
      const expected = name === 'one' ? 'one-secret-v2' : `${name}-secret`;
      expect((await vault.resolve(name)).fields.token).toBe(expected);
      // The other process meets version 2 and reloads the key file.
      expect((await otherVault.resolve(name)).fields.token).toBe(expected);
    }
    const signing = (await store.listSigningKeys())[0];
    expect((await vault.open('authority-key:k1', signing?.privateKeyEnc ?? '')).toString()).toBe(
      'private-key-bytes',
    );
    // Nothing left to do on a second run.
    expect(await vault.rotateMasterKey()).toEqual({ version: 2, rewrapped: 0, total: 4 });
    // New writes use the new version.
    await vault.set('four', { token: 'four-secret' });
    const four = await store.getCredential('four');
    expect((JSON.parse(four?.sealed ?? '{}') as { kv: number }).kv).toBe(2);
  });

  it('rotates onto a key added to NEXUS_MASTER_KEY, after which the old key can go', async () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const first = setup(valueKeyring(oldKey));
    await first.vault.set('c', { token: 'tok' });
    expect(await codeOf(first.vault.rotateMasterKey(newKey))).toBe('conflict');
    await first.store.close();

    const both = setup(valueKeyring(newKey, oldKey), first.dir);
    expect(await both.vault.rotateMasterKey()).toEqual({ version: 2, rewrapped: 1, total: 1 });
    await both.store.close();

    const onlyNew = setup(keyringFromValue(`v2:${b64(newKey)}`), first.dir);
    await onlyNew.vault.init();
    expect((await onlyNew.vault.resolve('c')).fields).toEqual({ token: 'tok' });
  });

  it('aborts without writing when a sealed blob cannot be unwrapped', async () => {
    const oldKey = randomBytes(32);
    const { vault, store, dir } = setup(valueKeyring(oldKey));
    await vault.set('good', { token: 'g' });
    await vault.set('bad', { token: 'b' });
    const raw = new Database(join(dir, 'nexus.db'));
    try {
      const row = raw
        .prepare("SELECT sealed FROM credential_versions WHERE name = 'bad' AND sealed IS NOT NULL")
        .get() as { sealed: string };
      const bad = JSON.parse(row.sealed) as Record<string, string>;
      const wk = Buffer.from(bad.wk ?? '', 'base64');
      wk[3] = (wk[3] ?? 0) ^ 1;
      raw
        .prepare("UPDATE credential_versions SET sealed = ? WHERE name = 'bad'")
        .run(JSON.stringify({ ...bad, wk: wk.toString('base64') }));
    } finally {
      raw.close();
    }
    const before = await store.listAllSealed();
    const rotating = createVault({ store, keyring: valueKeyring(randomBytes(32), oldKey), clock });
    expect(await codeOf(rotating.rotateMasterKey())).toBe('credential_unavailable');
    expect(await store.listAllSealed()).toEqual(before);
    expect((await rotating.resolve('good')).fields).toEqual({ token: 'g' });
  });
});

describe('at rest', () => {
  it('never writes a plaintext value to the database, WAL or shared-memory files', async () => {
    const { vault, store, dir } = setup(valueKeyring(randomBytes(32)));
    const values = [
      'PLAINTEXT-CANARY-ghp_7f3e9a1b2c',
      'ANOTHER-CANARY-xoxb-55aa66bb',
      'ZmFrZS1iYXNlNjQtY2FuYXJ5LXZhbHVl',
    ];
    await vault.set('one', { token: values[0] ?? '' });
    await vault.set('two', { client_id: 'id', client_secret: values[1] ?? '' });
    await vault.rotate('one', { token: values[2] ?? '' });
    await vault.seal('authority-key:k', Buffer.from(values[0] ?? ''));

    const files = ['nexus.db', 'nexus.db-wal', 'nexus.db-shm'].map((f) => join(dir, f));
    const check = (): void => {
      for (const file of files) {
        if (!existsSync(file)) continue;
        const bytes = readFileSync(file);
        for (const value of values) {
          expect(bytes.includes(Buffer.from(value))).toBe(false);
          expect(bytes.includes(Buffer.from(value, 'utf16le'))).toBe(false);
          expect(bytes.includes(Buffer.from(Buffer.from(value).toString('base64')))).toBe(false);
        }
      }
    };
    expect(existsSync(files[1] ?? '')).toBe(true); // the WAL holds the recent writes
    check();
    await store.close(); // checkpoints the WAL into the main file
    check();
  });
});
