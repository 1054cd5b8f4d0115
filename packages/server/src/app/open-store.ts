/** Opens the store a validated config names. */
import { realpathSync, statSync } from 'node:fs';
import { NexusError } from '@nexus/protocol';
import type { Config } from '../config/schema.js';
import { StoreError } from '../store/errors.js';
import { fileIdentity } from '../store/file-guard.js';
import { acquireNodeLock, type NodeLock } from '../store/node-lock.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';

/**
 * Opens the configured store for a command (`nexus init` with `create`, `nexus audit
 * verify` read-only). Without `create`, a missing store file is `store_missing`: only
 * `nexus init` creates stores.
 */
export async function openConfiguredStore(
  config: Config,
  options: { readonly?: boolean; create?: boolean } = {},
): Promise<SqliteStore> {
  if (config.store.driver !== 'sqlite') {
    throw new NexusError('internal_error', 'only sqlite stores are supported by this version');
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
  readonly store: SqliteStore;
  /** Undefined for an in-memory store (nothing to share). */
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
): Promise<NodeStore> {
  if (config.store.driver !== 'sqlite') {
    throw new NexusError('internal_error', 'only sqlite stores are supported by this version');
  }
  if (config.store.path === ':memory:') {
    return { store: openSqliteStore(config.store.path), lock: undefined };
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
  const lock = acquireNodeLock(path);
  try {
    const store = openSqliteStore(path, {
      create: false,
      lock: { path: lock.path, identity: lock.identity },
      ...(onFault === undefined ? {} : { onFault }),
    });
    return { store, lock };
  } catch (error) {
    lock.release();
    throw error;
  }
}
