// The audit writer in its worker thread, against a real SQLite file. The thread runs the
// compiled `dist/` module (Node 20 cannot load the TypeScript source in a worker);
// `npm test` builds first.
import { copyFileSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { hashRecord, verifySink, type AuditCheckpoint, type ChainRecord } from './chain.js';
import { auditSinkFromStore } from './sink.js';
import { openThreadedAuditWriter, type ThreadedAuditWriterOptions } from './threaded-writer.js';
import { openSqliteStore } from '../store/sqlite.js';

const workerUrl = new URL('../../dist/audit/writer-thread.js', import.meta.url);
const root = mkdtempSync(join(tmpdir(), 'nexus-audit-thread-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A migrated database file, as `nexus up` has it before the audit thread starts. */
async function database(): Promise<string> {
  const path = join(root, `db-${++n}`, 'nexus.db');
  await openSqliteStore(path).close();
  return path;
}

// An unsigned stand-in JWS (the chain test checks the payload, not a key).
const fakeSign = (payloadText: string) =>
  Promise.resolve({
    kid: 'k1',
    jws: `e30.${Buffer.from(payloadText).toString('base64url')}.sig`,
  });

const options = (extra: Partial<ThreadedAuditWriterOptions> = {}): ThreadedAuditWriterOptions => ({
  signCheckpoint: fakeSign,
  checkpointIntervalMs: 0,
  workerUrl,
  ...extra,
});

function record(i: number, extra: Record<string, unknown> = {}): ChainRecord {
  return {
    v: 1,
    kind: 'request',
    time: new Date(1_700_000_000_000 + i).toISOString(),
    request_id: `req-${i}`,
    agent: 'nexus://example.org/agent/bot',
    service: 'echo',
    decision: 'allow',
    ...extra,
  };
}

describe('threaded audit writer (worker thread)', () => {
  it('hashes, chains and commits in its thread; the rows, their index columns and checkpoints verify', async () => {
    const path = await database();
    const stored: AuditCheckpoint[] = [];
    const w = await openThreadedAuditWriter(path, {
      ...options({ checkpointEvery: 40 }),
      onCheckpoint: (cp) => void stored.push(cp),
    });
    const positions = await Promise.all(
      Array.from({ length: 100 }, (_x, i) => w.append(record(i + 1))),
    );
    expect(positions.map((p) => p.seq)).toEqual(Array.from({ length: 100 }, (_x, i) => i + 1));
    // The hash is the chain's own: sha256(JCS({...record, seq, prev_hash})).
    const store = openSqliteStore(path, { create: false });
    const [first] = await store.readAudit({ fromSeq: 1, limit: 1 });
    expect(positions[0]!.hash).toBe(hashRecord(record(1), 1, '0'.repeat(64)));
    expect(first!.hash).toBe(positions[0]!.hash);
    await w.close();
    expect(stored.map((c) => c.seq)).toContain(100);
    const db = new Database(path, { readonly: true });
    const row = db.prepare('SELECT agent, service, decision FROM audit WHERE seq = 7').get();
    db.close();
    expect(row).toEqual({ agent: 'bot', service: 'echo', decision: 'allow' });
    const result = await verifySink(auditSinkFromStore(store), { verifyCheckpoint: () => true });
    expect(result).toMatchObject({ ok: true, count: 100 });
    await store.close();
  });

  it('two audit threads on one file (as the processes of a --workers node) extend one chain: none refused, no fork', async () => {
    const path = await database();
    const a = await openThreadedAuditWriter(path, options());
    const b = await openThreadedAuditWriter(path, options());
    // Interleaved: each thread's head is stale at almost every batch.
    const all = await Promise.all(
      Array.from({ length: 600 }, (_x, i) => (i % 2 === 0 ? a : b).append(record(i + 1))),
    );
    await a.close();
    await b.close();
    expect(new Set(all.map((p) => p.seq)).size).toBe(600);
    const store = openSqliteStore(path, { create: false });
    const result = await verifySink(auditSinkFromStore(store), { verifyCheckpoint: () => true });
    expect(result).toMatchObject({ ok: true, count: 600 });
    await store.close();
  });

  it('replay claims (--workers): two threads, each pair claimed by both many times, one record each; the rest refused alone', async () => {
    const path = await database();
    const a = await openThreadedAuditWriter(path, options());
    const b = await openThreadedAuditWriter(path, options());
    const forgetAt = Date.now() + 60_000;
    const claim = (k: number) => ({ key: `pair-${k}`, forgetAt, exclusive: true });
    // 20 pairs, each claimed 6 times, alternating threads, all at once; unclaimed records
    // in the same batches.
    const tries = Array.from({ length: 120 }, (_x, i) => {
      const w = i % 2 === 0 ? a : b;
      return w.append(record(i + 1, { try: i }), claim(i % 20)).then(
        () => ({ pair: i % 20, ok: true, code: undefined as string | undefined }),
        (e: { code?: string }) => ({ pair: i % 20, ok: false, code: e.code }),
      );
    });
    const plain = Array.from({ length: 40 }, (_x, i) =>
      (i % 2 === 0 ? a : b).append(record(1000 + i)),
    );
    const results = await Promise.all(tries);
    expect((await Promise.all(plain)).length).toBe(40);
    for (let k = 0; k < 20; k++) {
      const mine = results.filter((r) => r.pair === k);
      expect(mine.filter((r) => r.ok)).toHaveLength(1);
      expect(mine.filter((r) => !r.ok).map((r) => r.code)).toEqual(
        Array(5).fill('replay_detected'),
      );
    }
    // A refusal's record (not exclusive) is written even though its pair is spent.
    await a.append(record(2000), { ...claim(3), exclusive: false });
    await a.close();
    await b.close();
    const store = openSqliteStore(path, { create: false });
    const result = await verifySink(auditSinkFromStore(store), { verifyCheckpoint: () => true });
    expect(result).toMatchObject({ ok: true, count: 20 + 40 + 1 });
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM replay_nonces').get()).toEqual({ n: 20 });
    db.close();
  });

  it('replay claims: an expired record is taken over, and expired records are swept', async () => {
    const path = await database();
    const db = new Database(path);
    const past = Date.now() - 1000;
    const insert = db.prepare('INSERT INTO replay_nonces (key, forget_at) VALUES (?, ?)');
    for (let i = 0; i < 50; i++) insert.run(`old-${i}`, past);
    insert.run('live', Date.now() + 60_000);
    db.close();
    const w = await openThreadedAuditWriter(path, options());
    const forgetAt = Date.now() + 60_000;
    // `old-7` expired: claimed again, as a fresh pair (the in-memory cache forgot it too).
    await w.append(record(1), { key: 'old-7', forgetAt, exclusive: true });
    await expect(
      w.append(record(2), { key: 'live', forgetAt, exclusive: true }),
    ).rejects.toMatchObject({ code: 'replay_detected' });
    await w.close();
    const check = new Database(path, { readonly: true });
    const keys = check.prepare('SELECT key FROM replay_nonces ORDER BY key').all();
    check.close();
    expect(keys).toEqual([{ key: 'live' }, { key: 'old-7' }]);
  });

  it('a record without index fields gets NULL columns (the record is not re-parsed)', async () => {
    const path = await database();
    const w = await openThreadedAuditWriter(path, options());
    await w.append({
      kind: 'authority',
      time: new Date(0).toISOString(),
      request_id: 'r',
      action: 'x',
    });
    await w.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT agent, service, decision FROM audit').get()).toEqual({
      agent: null,
      service: null,
      decision: null,
    });
    db.close();
  });

  it('rejects a record carrying seq alone with internal_error; the others are written', async () => {
    const path = await database();
    const w = await openThreadedAuditWriter(path, options());
    const bad = w.append(record(1, { seq: 9 }));
    const good = w.append(record(2));
    await expect(bad).rejects.toMatchObject({ code: 'internal_error' });
    expect(await good).toMatchObject({ seq: 1 });
    await w.close();
  });

  it('reports a failed write as audit_unavailable and recovers when the database does', async () => {
    const path = await database();
    const w = await openThreadedAuditWriter(path, options());
    const db = new Database(path);
    db.exec(
      "CREATE TRIGGER t_down BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    );
    await expect(w.append(record(1))).rejects.toMatchObject({ code: 'audit_unavailable' });
    db.exec('DROP TRIGGER t_down');
    db.close();
    expect(await w.append(record(2))).toMatchObject({ seq: 1 });
    await w.close();
  });

  it('close waits for the appends in flight and writes a final checkpoint, then refuses new ones', async () => {
    const path = await database();
    const stored: AuditCheckpoint[] = [];
    const w = await openThreadedAuditWriter(path, {
      ...options(),
      onCheckpoint: (cp) => void stored.push(cp),
    });
    const pending = Array.from({ length: 50 }, (_x, i) => w.append(record(i)));
    await w.close();
    expect((await Promise.all(pending)).at(-1)).toMatchObject({ seq: 50 });
    expect(stored.map((c) => c.seq)).toEqual([50]);
    await expect(w.append(record(99))).rejects.toMatchObject({ code: 'audit_unavailable' });
  });

  it("the WAL is checkpointed by a thread of its own, never inside the audit thread's commits", async () => {
    const sizes = async (walCheckpointMs: number, settleMs: number) => {
      const path = await database();
      const before = statSync(path).size;
      const w = await openThreadedAuditWriter(path, options({ walCheckpointMs }));
      // One record per transaction: ~6 WAL pages each, well past SQLite's 1,000-page
      // automatic checkpoint.
      for (let i = 0; i < 300; i++) await w.append(record(i, { pad: 'p'.repeat(2000) }));
      const walPages = statSync(`${path}-wal`).size / 4096;
      const deadline = Date.now() + settleMs;
      while (Date.now() < deadline && statSync(path).size === before) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const grown = statSync(path).size - before;
      await w.close();
      return { walPages, grown };
    };
    // SQLite's default (no checkpointer): the audit thread's commits checkpoint.
    expect((await sizes(0, 0)).grown).toBeGreaterThan(0);
    // A checkpointer that has not run yet: nothing reached the database file, the WAL
    // holds it all.
    const idle = await sizes(60_000, 0);
    expect(idle.grown).toBe(0);
    expect(idle.walPages).toBeGreaterThan(1000);
    // The checkpointer copies the pages in.
    expect((await sizes(50, 5_000)).grown).toBeGreaterThan(0);
  });

  it('fails the appends waiting on a thread that dies, and starts a new one for the next', async () => {
    // A stand-in thread with the same protocol that exits on a record named "crash".
    const script = join(root, 'crashing-thread.mjs');
    writeFileSync(
      script,
      `import { parentPort } from 'node:worker_threads';
       parentPort.on('message', (m) => {
         if (m.append === undefined) return;
         if (JSON.parse(m.records)[0].request_id === 'crash') process.exit(3);
         parentPort.postMessage({ done: m.append.map((id, i) => [id, i + 1, 'h']) });
       });
       parentPort.postMessage({ ready: true });`,
    );
    const w = await openThreadedAuditWriter(join(root, 'unused.db'), {
      ...options(),
      workerUrl: pathToFileURL(script),
    });
    await expect(w.append(record(1, { request_id: 'crash' }))).rejects.toMatchObject({
      code: 'audit_unavailable',
    });
    expect(await w.append(record(2))).toEqual({ seq: 1, hash: 'h' });
    await w.terminate();
  });

  it('a database that cannot be opened is an error at start', async () => {
    writeFileSync(join(root, 'garbage.db'), 'this is not a SQLite file, just text '.repeat(200));
    await expect(openThreadedAuditWriter(join(root, 'garbage.db'), options())).rejects.toThrow(
      /not a database|file is not/,
    );
  });

  it("an append blocked by another connection's lock fails after a bounded wait, then works once released (issue 10)", async () => {
    const path = await database();
    const w = await openThreadedAuditWriter(path, options({ busyTimeoutMs: 50 }));
    const holder = new Database(path);
    holder.exec('BEGIN EXCLUSIVE');
    try {
      await expect(w.append(record(1))).rejects.toMatchObject({
        code: 'audit_unavailable',
        cause: { code: 'SQLITE_BUSY' },
      });
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(await w.append(record(2))).toMatchObject({ seq: 1 });
    await w.close();
  });

  it('writes only to the files the main connection opened: a replaced store is store_unavailable (issue 10)', async () => {
    const path = await database();
    const main = openSqliteStore(path, { create: false });
    const faults: unknown[] = [];
    const w = await openThreadedAuditWriter(path, {
      ...options({ expectFiles: main.files }),
      onStoreFault: (e) => faults.push(e),
    });
    expect(await w.append(record(1))).toMatchObject({ seq: 1 });
    copyFileSync(path, `${path}.copy`);
    renameSync(`${path}.copy`, path);
    await expect(w.append(record(2))).rejects.toMatchObject({
      code: 'audit_unavailable',
      cause: { code: 'store_unavailable' },
    });
    expect(faults).toHaveLength(1);
    await w.terminate();
    await main.close();
    // A thread started for a store whose files are not the main connection's refuses to.
    const other = await database();
    await expect(
      openThreadedAuditWriter(other, options({ expectFiles: main.files })),
    ).rejects.toMatchObject({ code: 'store_unavailable' });
  });
});
