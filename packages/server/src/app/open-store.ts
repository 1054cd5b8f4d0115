/** Opens the store a validated config names. */
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
  const path = config.store.path;
  if (path === ':memory:') return { store: openSqliteStore(path), lock: undefined };
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
