// The worker-thread audit appender against a real SQLite file. The worker runs the
// compiled `dist/` module (Node 20 cannot load the TypeScript source in a worker);
// `npm test` builds first.
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { GENESIS_HASH } from '../audit/chain.js';
import { openSqliteAuditAppender } from './sqlite-audit-appender.js';
import { openSqliteStore } from './sqlite.js';
import type { AuditAppend } from './store.js';

const workerUrl = new URL('../../dist/store/sqlite-audit-worker.js', import.meta.url);
const root = mkdtempSync(join(tmpdir(), 'nexus-appender-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A migrated database file, as `nexus up` has it before the appender starts. */
async function database(): Promise<string> {
  const path = join(root, `db-${++n}`, 'nexus.db');
  await openSqliteStore(path).close();
  return path;
}

function chain(count: number, prev = GENESIS_HASH, from = 1): AuditAppend[] {
  const rows: AuditAppend[] = [];
  for (let i = 0; i < count; i++) {
    const hash = (from + i).toString(16).padStart(64, '0');
    rows.push({
      time: 1_700_000_000_000 + i,
      kind: 'request',
      requestId: `req-${from + i}`,
      record: JSON.stringify({ agent: 'bot', service: 'echo', decision: 'allow', i: from + i }),
      prevHash: prev,
      hash,
    });
    prev = hash;
  }
  return rows;
}

describe('SQLite audit appender (worker thread)', () => {
  it('appends durably through its own connection; another connection reads the rows', async () => {
    const path = await database();
    const appender = await openSqliteAuditAppender(path, { workerUrl });
    const first = chain(3);
    expect(await appender.append(first)).toEqual([1, 2, 3]);
    expect(await appender.append(chain(2, first[2]!.hash, 4))).toEqual([4, 5]);
    await appender.close();
    const db = new Database(path, { readonly: true });
    const rows = db.prepare('SELECT seq, request_id, agent, service FROM audit ORDER BY seq').all();
    db.close();
    expect(rows).toHaveLength(5);
    expect(rows[4]).toEqual({ seq: 5, request_id: 'req-5', agent: 'bot', service: 'echo' });
  });

  it('refuses a batch that does not link to the last row, writing none of it', async () => {
    const path = await database();
    const appender = await openSqliteAuditAppender(path, { workerUrl });
    await appender.append(chain(2));
    const forked = chain(2, 'f'.repeat(64), 3);
    await expect(appender.append(forked)).rejects.toMatchObject({ code: 'conflict' });
    await appender.close();
    const store = openSqliteStore(path);
    expect(await store.countAudit()).toBe(2);
    await store.close();
  });

  it('reports a failed write and recovers when the database does', async () => {
    const path = await database();
    const appender = await openSqliteAuditAppender(path, { workerUrl });
    const db = new Database(path);
    db.exec(
      "CREATE TRIGGER t_down BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    );
    await expect(appender.append(chain(1))).rejects.toThrow(/disk on fire/);
    db.exec('DROP TRIGGER t_down');
    db.close();
    expect(await appender.append(chain(1))).toEqual([1]);
    await appender.close();
  });

  it('close waits for the appends in flight, then refuses new ones', async () => {
    const path = await database();
    const appender = await openSqliteAuditAppender(path, { workerUrl });
    const pending = appender.append(chain(50));
    await appender.close();
    expect(await pending).toHaveLength(50);
    await expect(appender.append(chain(1))).rejects.toThrow(/closed/);
  });

  it('fails the appends waiting on a worker that dies, and starts a new one for the next', async () => {
    // A stand-in worker with the same protocol that exits on a row named "crash".
    const script = join(root, 'crashing-worker.mjs');
    writeFileSync(
      script,
      `import { parentPort } from 'node:worker_threads';
       parentPort.on('message', (m) => {
         if (m.rows[0].requestId === 'crash') process.exit(3);
         parentPort.postMessage({ id: m.id, seqs: m.rows.map((_r, i) => i + 1) });
       });
       parentPort.postMessage({ ready: true });`,
    );
    const appender = await openSqliteAuditAppender(join(root, 'unused.db'), {
      workerUrl: pathToFileURL(script),
    });
    const crash = { ...chain(1)[0]!, requestId: 'crash' };
    await expect(appender.append([crash])).rejects.toThrow(/audit worker exited \(3\)/);
    expect(await appender.append(chain(2))).toEqual([1, 2]);
    await appender.close();
  });

  it('a database that cannot be opened is an error at start', async () => {
    writeFileSync(join(root, 'garbage.db'), 'this is not a SQLite file, just text '.repeat(200));
    await expect(openSqliteAuditAppender(join(root, 'garbage.db'), { workerUrl })).rejects.toThrow(
      /not a database|file is not/,
    );
  });

  it("an append blocked by another connection's lock fails after a bounded wait with SQLITE_BUSY, then works once released (issue 10)", async () => {
    const path = await database();
    const appender = await openSqliteAuditAppender(path, { workerUrl, busyTimeoutMs: 50 });
    const holder = new Database(path);
    holder.exec('BEGIN EXCLUSIVE');
    try {
      await expect(appender.append(chain(1))).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(await appender.append(chain(1))).toEqual([1]);
    await appender.close();
  });

  it('writes only to the files the main connection opened: a replaced store is store_unavailable (issue 10)', async () => {
    const path = await database();
    const main = openSqliteStore(path, { create: false });
    const appender = await openSqliteAuditAppender(path, { workerUrl, expectFiles: main.files });
    const first = chain(2);
    expect(await appender.append(first.slice(0, 1))).toEqual([1]);
    copyFileSync(path, `${path}.copy`);
    renameSync(`${path}.copy`, path);
    await expect(appender.append(first.slice(1))).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    await appender.close();
    await main.close();
    // A worker started for a store whose files are not the main connection's refuses to.
    const other = await database();
    await expect(
      openSqliteAuditAppender(other, { workerUrl, expectFiles: main.files }),
    ).rejects.toMatchObject({ code: 'store_unavailable' });
  });
});
