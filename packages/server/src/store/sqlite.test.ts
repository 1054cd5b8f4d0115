// Runs the Store conformance suite on a temp-file SQLite database, plus the checks
// only SQLite has: migrations, read-only mode, pragmas, files, several connections.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runStoreConformance } from './conformance.js';
import { LATEST_SCHEMA_VERSION } from './migrations/all.js';
import { openStore, parseStoreUrl } from './open.js';
import { openSqliteStore } from './sqlite.js';
import { fileIdentity } from './file-guard.js';
import { acquireNodeLock } from './node-lock.js';

/** The repository root (a child process resolves better-sqlite3 from there). */
const REPO = resolve(import.meta.dirname, '../../../..');

const root = mkdtempSync(join(tmpdir(), 'nexus-store-'));
let counter = 0;
const tempPath = (): string => {
  const dir = join(root, `db-${++counter}`);
  mkdirSync(dir, { recursive: true });
  return join(dir, 'nexus.db');
};

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

runStoreConformance(
  'sqlite (file)',
  async () => openSqliteStore(tempPath()),
  (store) => store.close(),
);

describe('SQLite backend', () => {
  const opened: { close(): unknown }[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  it('creates the parent directory and a private file, with WAL and synchronous=FULL', async () => {
    const path = join(root, 'nested', 'deeper', 'nexus.db');
    const store = openSqliteStore(path);
    opened.push(store);
    expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o077).toBe(0);
    const raw = new Database(path, { readonly: true });
    opened.push(raw);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    const rawRw = new Database(path);
    opened.push(rawRw);
    const migrations = rawRw.prepare('SELECT version, name FROM schema_migrations').all();
    expect(migrations).toEqual([
      { version: 1, name: 'initial' },
      { version: 2, name: 'lease_revocation_indexes' },
      { version: 3, name: 'replay_nonces' },
      { version: 4, name: 'lease_delegation' },
      { version: 5, name: 'oauth_pending' },
      { version: 6, name: 'audit_index_trim' },
      { version: 7, name: 'held_approvals' },
    ]);
  });

  it('migrates a version-1 database to the latest version (the lease revocation indexes)', async () => {
    const path = tempPath();
    await openSqliteStore(path).close();
    // Back to what version 1 wrote.
    const raw = new Database(path);
    raw.exec(
      'DROP INDEX leases_parent; DROP INDEX leases_revoked_expiry; DROP TABLE replay_nonces; DROP TABLE oauth_pending; DROP TABLE held_approvals; ALTER TABLE leases DROP COLUMN delegation; ' +
        'DROP INDEX audit_agent; DROP INDEX audit_service; CREATE INDEX audit_time ON audit (time); ' +
        'CREATE INDEX audit_agent_time ON audit (agent, time); CREATE INDEX audit_service_time ON audit (service, time); ' +
        'DELETE FROM schema_migrations WHERE version >= 2;',
    );
    raw.close();
    const store = openSqliteStore(path);
    opened.push(store);
    expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    const check = new Database(path, { readonly: true });
    opened.push(check);
    const indexes = check
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('leases_parent', 'leases_revoked_expiry') ORDER BY name",
      )
      .all();
    expect(indexes).toEqual([{ name: 'leases_parent' }, { name: 'leases_revoked_expiry' }]);
    const columns = check.prepare("SELECT name FROM pragma_table_info('leases')").all();
    expect(columns).toContainEqual({ name: 'delegation' });
    // Migration 6: the audit indexes trimmed to request id, agent and service.
    const audit = check
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' AND sql IS NOT NULL ORDER BY name",
      )
      .all();
    expect(audit).toEqual([
      { name: 'audit_agent' },
      { name: 'audit_request_id' },
      { name: 'audit_service' },
    ]);
  });

  it('re-opens an existing database without re-running migrations', async () => {
    const path = tempPath();
    const first = openSqliteStore(path);
    await first.setMeta('kept', 'yes');
    await first.close();
    const second = openSqliteStore(path);
    opened.push(second);
    expect(await second.getMeta('kept')).toBe('yes');
    expect(second.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
  });

  it('refuses a database newer than the code (store_version_unsupported)', async () => {
    const path = tempPath();
    await openSqliteStore(path).close();
    const raw = new Database(path);
    raw
      .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
      .run(LATEST_SCHEMA_VERSION + 1, 'from-the-future', 0);
    raw.close();
    expect(() => openSqliteStore(path)).toThrow(
      expect.objectContaining({ code: 'store_version_unsupported' }),
    );
    expect(() => openSqliteStore(path, { readonly: true })).toThrow(
      expect.objectContaining({ code: 'store_version_unsupported' }),
    );
  });

  it('rolls a failed migration back entirely', async () => {
    const path = tempPath();
    const raw = new Database(path);
    // A table the initial migration wants to create: the migration fails midway.
    raw.exec('CREATE TABLE meta (x INTEGER)');
    raw.close();
    expect(() => openSqliteStore(path)).toThrow();
    const check = new Database(path);
    opened.push(check);
    const tables = check
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as { name: string }[];
    expect(tables.map((t) => t.name)).toEqual(['meta']);
  });

  it('opens read-only: reads work, writes reject, a fresh file is refused', async () => {
    const path = tempPath();
    const rw = openSqliteStore(path);
    await rw.setMeta('k', 'v');
    await rw.close();
    const ro = openSqliteStore(path, { readonly: true });
    opened.push(ro);
    expect(await ro.getMeta('k')).toBe('v');
    await expect(ro.setMeta('k', 'w')).rejects.toThrow();
    expect(() => openSqliteStore(join(root, 'missing.db'), { readonly: true })).toThrow();
  });

  it('works in memory', async () => {
    const store = openSqliteStore(':memory:');
    opened.push(store);
    await store.setMeta('a', 'b');
    expect(await store.getMeta('a')).toBe('b');
  });

  it('consumes an enrollment token once across two connections', async () => {
    const path = tempPath();
    const a = openSqliteStore(path);
    const b = openSqliteStore(path);
    opened.push(a, b);
    await a.upsertAgent({ name: 'bot', roles: [], source: 'api', createdAt: 1 });
    await a.createEnrollmentToken({
      id: 'e',
      agent: 'bot',
      tokenHash: 'h',
      expiresAt: 100,
      createdAt: 1,
    });
    const results = await Promise.all([
      a.consumeEnrollmentToken('h', 2),
      b.consumeEnrollmentToken('h', 2),
      a.consumeEnrollmentToken('h', 3),
      b.consumeEnrollmentToken('h', 3),
    ]);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
  });

  it('allocates credential versions across two connections', async () => {
    const path = tempPath();
    const a = openSqliteStore(path);
    const b = openSqliteStore(path);
    opened.push(a, b);
    const put = (s: typeof a, i: number) =>
      s.putCredentialVersion('c', { fieldNames: ['t'], createdAt: i, seal: (v) => `s${v}` });
    const rows = await Promise.all([put(a, 1), put(b, 2), put(a, 3), put(b, 4)]);
    expect(rows.map((r) => r.version).sort()).toEqual([1, 2, 3, 4]);
  });

  it('refuses to update or delete audit rows (append-only at the database)', async () => {
    const path = tempPath();
    const store = openSqliteStore(path);
    opened.push(store);
    await store.appendAudit([
      { time: 1, kind: 'request', requestId: 'r', record: '{}', prevHash: 'g', hash: 'h1' },
    ]);
    const raw = new Database(path);
    opened.push(raw);
    expect(() => raw.exec('UPDATE audit SET record = \'{"x":1}\'')).toThrow(/append-only/);
    expect(() => raw.exec('DELETE FROM audit')).toThrow(/append-only/);
    expect(await store.countAudit()).toBe(1);
  });
});

describe('store URLs', () => {
  it.each([
    ['sqlite:.nexus/nexus.db', '/srv/app', '/srv/app/.nexus/nexus.db'],
    ['sqlite:data/x.db', '/base', '/base/data/x.db'],
    ['sqlite:/var/lib/nexus.db', '/base', '/var/lib/nexus.db'],
    ['sqlite:///var/lib/nexus.db', '/base', '/var/lib/nexus.db'],
    ['sqlite::memory:', '/base', ':memory:'],
  ])('%s -> %s', (url, base, path) => {
    expect(parseStoreUrl(url, base)).toEqual({ kind: 'sqlite', path });
  });

  it.each(['postgres://u@h/db', 'postgresql://h:5433/db'])('%s -> postgres', (url) => {
    expect(parseStoreUrl(url, '/base')).toEqual({ kind: 'postgres', url });
  });

  it.each([
    ['postgres://u@h:port/db', 'store_url_invalid'],
    ['mysql://h/db', 'store_url_invalid'],
    ['sqlite:', 'store_url_invalid'],
    ['sqlite://host/x.db', 'store_url_invalid'],
    ['.nexus/nexus.db', 'store_url_invalid'],
  ])('%s -> %s', (url, code) => {
    expect(() => parseStoreUrl(url, '/base')).toThrow(expect.objectContaining({ code }));
  });

  it('opens a relative sqlite URL against the base dir', async () => {
    const base = join(root, 'url-base');
    const store = await openStore('sqlite:.nexus/nexus.db', { baseDir: base });
    expect(statSync(join(base, '.nexus', 'nexus.db')).isFile()).toBe(true);
    await store.close();
  });
});

describe('regression: dropped append-only triggers (newcomer check)', () => {
  it('come back when the store is opened again', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'nexus-trigger-')), 'nexus.db');
    const first = openSqliteStore(file);
    await first.close();
    const raw = new Database(file);
    raw.exec('DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;');
    raw.close();
    const again = openSqliteStore(file);
    await again.close();
    const check = new Database(file);
    const names = check
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
      .all()
      .map((r) => (r as { name: string }).name);
    check.close();
    expect(names).toEqual(expect.arrayContaining(['audit_no_delete', 'audit_no_update']));
  });
});

describe("issue 10: the store under the operator's tools and faults", () => {
  const opened: { close(): unknown }[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  /**
   * The operator's `sqlite3` (Debian's CLI; `.ci/run` installs it): a separate process that
   * opens the database read-write, reads, and closes. (A better-sqlite3 child does not
   * checkpoint and delete the WAL on close, so it would not find the bug this guards.)
   */
  function outsideReadWriteClient(path: string): number {
    return Number(
      execFileSync('sqlite3', [path, 'SELECT count(*) FROM meta'], { encoding: 'utf8' }).trim(),
    );
  }

  it("a second connection in the process keeps the first one's locks: an outside client leaves the WAL in place", async () => {
    const path = tempPath();
    const main = openSqliteStore(path);
    opened.push(main);
    await main.setMeta('a', '1');
    // What the audit worker does: a second connection on the same file, same process.
    const worker = openSqliteStore(path, { create: false, migrate: false, blockOnBusy: true });
    opened.push(worker);
    const wal = fileIdentity(`${path}-wal`);
    expect(outsideReadWriteClient(path)).toBeGreaterThan(0);
    // The outside client's close found the database in use: no checkpoint-and-delete.
    expect(fileIdentity(`${path}-wal`)).toBe(wal);
    await worker.setMeta('b', '2');
    await main.setMeta('c', '3');
    await worker.close();
    await main.close();
    const check = openSqliteStore(path, { readonly: true });
    opened.push(check);
    expect([await check.getMeta('b'), await check.getMeta('c')]).toEqual(['2', '3']);
  });

  it('never creates a missing store unless asked (store_missing)', () => {
    const path = join(root, 'never-created', 'nexus.db');
    expect(() => openSqliteStore(path, { create: false })).toThrow(
      expect.objectContaining({ code: 'store_missing' }),
    );
    expect(existsSync(path)).toBe(false);
    expect(existsSync(dirname(path))).toBe(false);
  });

  const faults: [string, (path: string) => void][] = [
    ['the database file deleted', (p) => rmSync(p)],
    ['the database file moved away', (p) => renameSync(p, `${p}.moved`)],
    [
      'the database file replaced by a copy',
      (p) => {
        copyFileSync(p, `${p}.copy`);
        renameSync(`${p}.copy`, p);
      },
    ],
    ['the WAL deleted', (p) => rmSync(`${p}-wal`)],
  ];
  it.each(faults)(
    '%s under an open store: the next write fails closed, and every call after it (store_unavailable)',
    async (_name, fault) => {
      const path = tempPath();
      const seen: unknown[] = [];
      const store = openSqliteStore(path, { onFault: (e) => seen.push(e) });
      opened.push(store);
      await store.setMeta('before', 'x');
      fault(path);
      await expect(store.setMeta('after', 'x')).rejects.toMatchObject({
        code: 'store_unavailable',
      });
      await expect(store.getMeta('before')).rejects.toMatchObject({ code: 'store_unavailable' });
      await expect(store.setMeta('again', 'x')).rejects.toMatchObject({
        code: 'store_unavailable',
      });
      expect(seen).toMatchObject([{ code: 'store_unavailable' }]);
    },
  );

  it('a connection that must find the files another one opened refuses different ones', async () => {
    const path = tempPath();
    const main = openSqliteStore(path);
    opened.push(main);
    const other = tempPath();
    await openSqliteStore(other).close();
    const files = main.files!;
    expect(() =>
      openSqliteStore(other, { create: false, migrate: false, expectFiles: files }),
    ).toThrow(expect.objectContaining({ code: 'store_unavailable' }));
  });

  it("waits for another connection's lock without blocking the event loop, and carries on once it is released", async () => {
    const path = tempPath();
    const store = openSqliteStore(path);
    opened.push(store);
    const holder = new Database(path);
    opened.push(holder);
    holder.exec('BEGIN EXCLUSIVE');
    let settled = false;
    const write = store.setMeta('k', 'v').finally(() => (settled = true));
    // Timers still run while the write waits: the event loop is free.
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    holder.exec('COMMIT');
    await write;
    expect(await store.getMeta('k')).toBe('v');
  });

  it('gives up on a lock held past its deadline with store_busy, having changed nothing', async () => {
    const path = tempPath();
    const store = openSqliteStore(path, { busyTimeoutMs: 50 });
    opened.push(store);
    const holder = new Database(path);
    opened.push(holder);
    holder.exec('BEGIN EXCLUSIVE');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      const err = await store.setMeta('k', 'v').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'store_busy', cause: { code: 'SQLITE_BUSY' } });
      expect(ticks).toBeGreaterThan(0);
      // Reads are not held up by a writer (WAL).
      expect(await store.getMeta('k')).toBeUndefined();
    } finally {
      clearInterval(timer);
      holder.exec('ROLLBACK');
    }
  });

  it("a blocking (worker) connection surfaces SQLite's own SQLITE_BUSY after its bounded wait", async () => {
    const path = tempPath();
    const main = openSqliteStore(path);
    opened.push(main);
    const worker = openSqliteStore(path, {
      create: false,
      migrate: false,
      blockOnBusy: true,
      busyTimeoutMs: 20,
    });
    opened.push(worker);
    const holder = new Database(path);
    opened.push(holder);
    holder.exec('BEGIN EXCLUSIVE');
    try {
      await expect(worker.setMeta('k', 'v')).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      holder.exec('ROLLBACK');
    }
    await worker.setMeta('k', 'v');
  });
});

describe('issue 10: one node per store (node lock)', () => {
  it('is exclusive while held, private, and free again once released', () => {
    const path = tempPath();
    const lock = acquireNodeLock(path);
    try {
      expect(lock.path).toBe(`${path}.lock`);
      if (process.platform !== 'win32') expect(statSync(lock.path).mode & 0o077).toBe(0);
      expect(() => acquireNodeLock(path)).toThrow(
        expect.objectContaining({ code: 'store_in_use' }),
      );
      // Another process cannot take it either.
      const r = spawnSync(
        process.execPath,
        [
          '-e',
          `const D = require('better-sqlite3'); const d = new D(process.argv[1], { timeout: 0 });
           try { d.exec('BEGIN EXCLUSIVE'); process.stdout.write('got'); }
           catch (e) { process.stdout.write(e.code); }`,
          lock.path,
        ],
        { cwd: REPO, encoding: 'utf8' },
      );
      expect(r.stdout).toBe('SQLITE_BUSY');
    } finally {
      lock.release();
    }
    const again = acquireNodeLock(path);
    again.release();
    again.release();
  });

  it('a store guarding its node lock fails closed when the lock file is removed', async () => {
    const path = tempPath();
    const lock = acquireNodeLock(path);
    const store = openSqliteStore(path, { lock: { path: lock.path, identity: lock.identity } });
    try {
      await store.setMeta('a', 'b');
      rmSync(lock.path);
      await expect(store.setMeta('a', 'c')).rejects.toMatchObject({ code: 'store_unavailable' });
    } finally {
      await store.close();
      lock.release();
    }
  });
});
