// Issue 10: the file guard finds a store file deleted or replaced under a running node,
// on its fast path (one stat of the directory) as well as on a full check.
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileGuard, fileIdentity } from './file-guard.js';

const root = mkdtempSync(join(tmpdir(), 'nexus-guard-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A database and a WAL file in a fresh directory. */
function files(): { dir: string; db: string; wal: string } {
  const dir = join(root, `d-${++n}`);
  mkdirSync(dir);
  const db = join(dir, 'nexus.db');
  const wal = `${db}-wal`;
  writeFileSync(db, 'db');
  writeFileSync(wal, 'wal');
  return { dir, db, wal };
}

describe('FileGuard (issue 10)', () => {
  const faults: [string, (f: { db: string; wal: string }) => void][] = [
    ['the database deleted', (f) => rmSync(f.db)],
    ['the database moved away', (f) => renameSync(f.db, `${f.db}.moved`)],
    [
      'the database replaced by a copy',
      (f) => {
        copyFileSync(f.db, `${f.db}.copy`);
        renameSync(`${f.db}.copy`, f.db);
      },
    ],
    ['the WAL deleted', (f) => rmSync(f.wal)],
  ];

  it.each(faults)('%s long after the last full check is still found', (_name, fault) => {
    const f = files();
    let now = Date.now();
    const guard = new FileGuard(
      [
        { label: 'the store file', path: f.db, identity: fileIdentity(f.db)! },
        { label: "the store's WAL file", path: f.wal, identity: fileIdentity(f.wal)! },
      ],
      () => now,
    );
    guard.check();
    // Much later: the directory has been quiet, so checks take the fast path.
    now += 60_000;
    guard.check();
    guard.check();
    fault(f);
    expect(() => guard.check()).toThrow(expect.objectContaining({ code: 'store_unavailable' }));
  });

  it('a deleted directory is store_unavailable, keeping the cause', () => {
    const f = files();
    const guard = new FileGuard([
      { label: 'the store file', path: f.db, identity: fileIdentity(f.db)! },
    ]);
    guard.check();
    rmSync(f.dir, { recursive: true });
    const cause = Object.assign(new Error('write failed'), { code: 'SQLITE_IOERR' });
    expect(() => guard.check(cause)).toThrow(
      expect.objectContaining({ code: 'store_unavailable' }),
    );
  });
});
