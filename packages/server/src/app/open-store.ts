/** Opens the store a validated config names. */
import { realpathSync, statSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { StoreError } from '../store/errors.js';
import { fileIdentity } from '../store/file-guard.js';
import { acquireNodeLock, nodeLockPath, type NodeLock } from '../store/node-lock.js';
import { openPostgresStore, type PostgresStore } from '../store/postgres.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';

/**
 * Opens the configured store for a command (`nexus init` with `create`, `nexus audit
 * verify` read-only). Without `create`, a missing store file is `store_missing`: only
 * `nexus init` creates stores.
 */
export async function openConfiguredStore(
  config: Config,
  options: { readonly?: boolean; create?: boolean } = {},
): Promise<SqliteStore | PostgresStore> {
  if (config.store.driver === 'postgres') {
    // A PostgreSQL database is made by its operator; Nexus creates (migrates) its tables.
    return openPostgresStore(config.store.url, { readonly: options.readonly === true });
  }
  return openSqliteStore(config.store.path, {
    readonly: options.readonly === true,
    create: options.create === true,
  });
}

function linkCount(path: string): number | undefined {
  try {
    return statSync(path).nlink;
  } catch {
    return undefined;
  }
}

/** The store a running node serves, with the node lock it holds. */
export interface NodeStore {
  readonly store: Store;
  /** The same store when it is SQLite (its files, the audit worker). */
  readonly sqlite: SqliteStore | undefined;
  /** The same store when it is PostgreSQL (its pool, its audit chain). */
  readonly postgres: PostgresStore | undefined;
  /** Undefined for an in-memory or PostgreSQL store (nothing to lock). */
  readonly lock: NodeLock | undefined;
}

/**
 * Opens the store for `nexus up`: the file MUST exist (`store_missing` otherwise), and
 * the node takes the store's node lock first (`store_in_use` when another live node
 * holds it), so two nodes never serve one SQLite store.
 *
 * @param onFault called once if the store's files are later deleted or replaced.
 */
export async function openNodeStore(
  config: Config,
  onFault?: (error: Error) => void,
  onIdleError?: (error: Error) => void,
  /** A worker of `nexus up --workers`: its primary holds the node lock for it. */
  lockHeldByPrimary = false,
): Promise<NodeStore> {
  if (config.store.driver === 'postgres') {
    // Any number of nodes share one database; each appends to an audit chain of its own
    // (a fresh random id per process, see store/postgres.ts).
    const store = await openPostgresStore(config.store.url, {
      ...(onIdleError === undefined ? {} : { onIdleError }),
    });
    return { store, sqlite: undefined, postgres: store, lock: undefined };
  }
  if (config.store.path === ':memory:') {
    const store = openSqliteStore(config.store.path);
    return { store, sqlite: store, postgres: undefined, lock: undefined };
  }
  // One file, one name: a symbolic link is followed to the file itself, so every name a
  // node could be given for the store meets the same lock and the same WAL; a second hard
  // link would not (SQLite names the WAL after the path), so it is refused (issue 10: two
  // nodes served one store through two links and corrupted it).
  let path = config.store.path;
  try {
    path = realpathSync(path);
  } catch {
    // missing: reported below
  }
  const links = linkCount(path);
  if (links !== undefined && links > 1) {
    throw new StoreError(
      'store_linked',
      `the Nexus store ${path} has ${links} names (hard links): two nodes could open it under different names; keep one name (rm the other links)`,
    );
  }
  if (fileIdentity(path) === undefined) {
    // Before the lock: the lock file lives beside the store and must not be created in
    // a directory that has no store.
    throw new StoreError(
      'store_missing',
      `no Nexus store at ${path}: create one with \`nexus init\`, or restore the file from a backup`,
    );
  }
  const lock = lockHeldByPrimary ? primaryLock(path) : acquireNodeLock(path);
  try {
    const store = openSqliteStore(path, {
      create: false,
      lock: { path: lock.path, identity: lock.identity },
      ...(onFault === undefined ? {} : { onFault }),
    });
    return { store, sqlite: store, postgres: undefined, lock };
  } catch (error) {
    lock.release();
    throw error;
  }
}

/**
 * The node lock a `nexus up --workers` primary holds: guarded by identity like an own
 * lock (replaced under the node: every write fails closed), released by the primary.
 */
function primaryLock(storePath: string): NodeLock {
  const path = nodeLockPath(storePath);
  const identity = fileIdentity(path);
  if (identity === undefined) {
    throw new StoreError('store_in_use', `the node lock file ${path} of the primary is missing`);
  }
  return { path, identity, release: () => undefined };
}
