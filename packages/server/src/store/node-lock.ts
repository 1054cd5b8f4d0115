// One live node per SQLite store (issue 10). Revocation, agent disable and the replay
// cache live in each node's memory: two nodes on one file would not share them (a
// replayed request would run twice, a lease revoked on one node would pass on the other).
// Until that state is shared, a node holds an exclusive SQLite lock on a lock file beside
// the store for as long as it runs; a second node cannot get it and refuses to start.
//
// The lock is a POSIX advisory lock taken by SQLite, so the OS drops it when the process
// dies, however it dies: there is no stale lock to clean up. The lock file is a separate
// file on purpose: read-only tools (`nexus audit verify`, `sqlite3`) keep opening the
// store itself while the node runs.
//
// MUST NOT: open and close the lock file (or the store) with node:fs while the lock is
// held: closing any descriptor of a file drops every POSIX lock the process holds on it.
import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StoreError } from './errors.js';
import { fileIdentity, type FileIdentity } from './file-guard.js';

/** A held node lock; see {@link acquireNodeLock}. */
export interface NodeLock {
  /** The lock file (`<store>.lock`). */
  readonly path: string;
  /** Its identity when the lock was taken (the store guards it: see `file-guard.ts`). */
  readonly identity: FileIdentity;
  /** Releases the lock. Idempotent. */
  release(): void;
}

/** The lock file of the store at `storePath`. */
export function nodeLockPath(storePath: string): string {
  return `${storePath}.lock`;
}

/**
 * Takes the node lock of the store at `storePath` without waiting.
 *
 * @throws StoreError `store_in_use` when another live process holds it.
 * @example
 * const lock = acquireNodeLock('/srv/nexus/.nexus/nexus.db');
 * // ... run the node ...
 * lock.release();
 */
export function acquireNodeLock(storePath: string): NodeLock {
  const path = nodeLockPath(storePath);
  // Created private and empty if missing ('wx' never opens an existing file, whose
  // descriptor's close would drop this process's locks on it).
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
  }
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 0');
    db.exec('BEGIN EXCLUSIVE');
  } catch (error) {
    db.close();
    const code = (error as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new StoreError(
        'store_in_use',
        `another Nexus node is running on ${storePath} (it holds ${path}); stop it first, or give this node its own store`,
        { cause: error },
      );
    }
    throw error;
  }
  const identity = fileIdentity(path);
  if (identity === undefined) {
    db.close();
    throw new StoreError('store_in_use', `the node lock file ${path} disappeared while locking`);
  }
  return {
    path,
    identity,
    release() {
      if (!db.open) return;
      db.exec('ROLLBACK');
      db.close();
    },
  };
}
