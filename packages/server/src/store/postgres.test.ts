// Runs the Store conformance suite on PostgreSQL (a fresh database per test), plus the
// checks only PostgreSQL has: migrations shared by concurrent nodes, per-node audit
// chains, and failing closed when the database cannot be reached.
import { afterEach, describe, expect, it } from 'vitest';
import { runStoreConformance } from './conformance.js';
import { LATEST_SCHEMA_VERSION } from './migrations/all.js';
import { openPostgresStore, type PostgresStore } from './postgres.js';
import type { AuditAppend, Store } from './store.js';
import { createTestDatabase, type TestDatabase } from './test/pg-database.js';

const databases = new WeakMap<Store, TestDatabase>();

runStoreConformance(
  'postgres',
  async () => {
    const db = await createTestDatabase('conf');
    const store = await openPostgresStore(db.url);
    databases.set(store, db);
    return store;
  },
  async (store) => {
    await store.close();
    await databases.get(store)?.drop();
  },
);

/** A linked chain of audit rows after `prev`. */
function rows(prev: string, n: number, tag: string): AuditAppend[] {
  const out: AuditAppend[] = [];
  let prevHash = prev;
  for (let i = 0; i < n; i++) {
    const hash = `${tag}-${i}`;
    out.push({
      time: 1000 + i,
      kind: 'request',
      requestId: `${tag}-r${i}`,
      record: '{}',
      prevHash,
      hash,
    });
    prevHash = hash;
  }
  return out;
}

describe('PostgreSQL backend', () => {
  let db: TestDatabase | undefined;
  const opened: Store[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await db?.drop();
    db = undefined;
  });
  const open = async (options: Parameters<typeof openPostgresStore>[1] = {}) => {
    const store = await openPostgresStore((db as TestDatabase).url, options);
    opened.push(store);
    return store;
  };

  it('migrates once when several nodes open an empty database together', async () => {
    db = await createTestDatabase('migr');
    const stores = await Promise.all([open(), open(), open()]);
    for (const s of stores) expect(s.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    const raw = stores[0] as PostgresStore;
    const applied = await raw.pool.query(
      'SELECT version, name FROM schema_migrations ORDER BY version',
    );
    expect(applied.rows).toEqual([
      { version: 1, name: 'initial' },
      { version: 2, name: 'lease_revocation_indexes' },
      { version: 3, name: 'replay_nonces' },
      { version: 4, name: 'lease_delegation' },
      { version: 5, name: 'oauth_pending' },
      { version: 6, name: 'audit_index_trim' },
      { version: 7, name: 'held_approvals' },
    ]);
  });

  it('refuses a schema newer than the code, and read-only on an unmigrated database', async () => {
    db = await createTestDatabase('vers');
    await expect(open({ readonly: true })).rejects.toMatchObject({
      code: 'store_version_unsupported',
    });
    const store = await open();
    await store.pool.query("INSERT INTO schema_migrations VALUES (999, 'future', 0)");
    await expect(open()).rejects.toMatchObject({ code: 'store_version_unsupported' });
  });

  it('keeps one audit chain per node: each links alone, queries see all, views read each', async () => {
    db = await createTestDatabase('chains');
    const a = await open({ chain: 'node-a', node: 'host-a' });
    const b = await open({ chain: 'node-b', node: 'host-b' });
    // Both chains start from the same genesis and interleave freely.
    await a.appendAudit(rows('genesis', 2, 'a'));
    await b.appendAudit(rows('genesis', 3, 'b'));
    await a.appendAudit(rows('a-1', 1, 'a2'));
    expect(await a.countAudit()).toBe(3);
    expect(await b.countAudit()).toBe(3);
    expect((await a.lastAudit())?.hash).toBe('a2-0');
    expect((await b.readAudit({ fromSeq: 1 })).map((r) => r.seq)).toEqual([1, 2, 3]);
    // Another node's head does not link this chain.
    await expect(a.appendAudit(rows('b-2', 1, 'x'))).rejects.toMatchObject({ code: 'conflict' });
    const found = await a.queryAudit({ limit: 100 });
    expect(new Set(found.map((r) => r.chain))).toEqual(new Set(['node-a', 'node-b']));
    const chains = await a.listAuditChains();
    expect(chains.map((c) => [c.chain, c.node])).toEqual([
      ['node-a', 'host-a'],
      ['node-b', 'host-b'],
    ]);
    const view = a.auditChain('node-b');
    expect((await view.readAudit({ fromSeq: 0 })).map((r) => r.hash)).toEqual([
      'b-0',
      'b-1',
      'b-2',
    ]);
    await view.close();
    expect(await a.countAudit()).toBe(3);
  });

  it('two writers on one chain never fork it', async () => {
    db = await createTestDatabase('fork');
    const a = await open({ chain: 'same' });
    const b = await open({ chain: 'same' });
    const results = await Promise.allSettled([
      a.appendAudit(rows('genesis', 5, 'a')),
      b.appendAudit(rows('genesis', 5, 'b')),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected as PromiseRejectedResult).reason).toMatchObject({ code: 'conflict' });
    expect(await a.countAudit()).toBe(5);
  });

  it('the database refuses to rewrite audit history', async () => {
    db = await createTestDatabase('ro');
    const a = await open({ chain: 'c' });
    await a.appendAudit(rows('genesis', 2, 'a'));
    await expect(a.pool.query('UPDATE audit SET record = \'{"x":1}\'')).rejects.toThrow(
      /append-only/,
    );
    await expect(a.pool.query('DELETE FROM audit')).rejects.toThrow(/append-only/);
    await expect(a.pool.query('TRUNCATE audit CASCADE')).rejects.toThrow(/append-only/);
    expect(await a.countAudit()).toBe(2);
  });

  it('fails closed with store_unavailable when the database cannot be reached', async () => {
    // Nothing listens on port 1: the connection is refused at once.
    await expect(
      openPostgresStore('postgres://postgres@127.0.0.1:1/nexus', { connectTimeoutMs: 500 }),
    ).rejects.toMatchObject({ code: 'store_unavailable' });
    db = await createTestDatabase('down');
    const store = await open();
    await store.setMeta('k', 'v');
    // The database goes away under the open store (every connection is terminated).
    await db.drop();
    db = undefined;
    await expect(store.getMeta('k')).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(store.appendAudit(rows('genesis', 1, 'z'))).rejects.toMatchObject({
      code: 'store_unavailable',
    });
  });
});
