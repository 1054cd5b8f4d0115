/**
 * What the nodes of a cluster share for OAuth connections (issue 13, spec §13.8):
 *
 * - Pending authorize links live in the store (`oauth_pending`): the `state` only as its
 *   SHA-256, the link (principal, PKCE verifier, redirect URI) sealed by the vault, and a
 *   callback is consumed once across all nodes by an atomic `DELETE ... RETURNING`.
 * - A refresh of one connection runs under a PostgreSQL transaction-level advisory lock
 *   (`pg_advisory_xact_lock`) keyed by the connection's vault name; the mechanic re-reads
 *   the stored connection after taking it and skips the refresh another node already
 *   made, so a rotating refresh token is spent once. The lock is held by a database
 *   session: if that session dies (the node is killed, the database restarts) the lock
 *   goes with it, which is what keeps a killed node from blocking the others. A session
 *   lost in the middle of a refresh is the one window where two nodes could spend the
 *   same refresh token; a provider that detects reuse then revokes the connection, and
 *   the account has to be connected again (`connection_expired`), never a wrong token.
 * - On SQLite, one process: the lock is the token cache's own single-flight. Workers of
 *   `nexus up --workers N` on SQLite: the primary holds the lock for its workers
 *   (`worker-oauth-locks.ts`: asked over the IPC pipe, per-key first come first served,
 *   released when the holding worker exits, a wait over 30 s fails `store_unavailable`),
 *   and the pending links are in the shared SQLite file as above.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { NexusError } from '@nexus-proxy/protocol';
import type { OAuthCoordination } from '../mechanics/mechanic.js';
import type { Store } from '../store/store.js';
import type { Vault } from '../vault/vault.js';

/**
 * Seal purpose of one pending link: bound to its row (state hash and service), so a link
 * moved to another row or relabelled with another service by someone who can write the
 * store but not read the vault key does not open (it would otherwise complete a flow
 * begun for one principal or service on another).
 */
function sealPurpose(stateHash: string, service: string): string {
  const row = createHash('sha256').update(`${stateHash}\0${service}`).digest('hex');
  return `oauth2.pending:${row}`;
}

/** Longest wait for another node's refresh of the same connection. */
const LOCK_WAIT = '30s';

/** The signed 64-bit advisory lock key of `key` (a hash: any text maps to one lock). */
export function advisoryKey(key: string): string {
  const hex = createHash('sha256').update(`nexus:${key}`).digest('hex').slice(0, 16);
  return BigInt.asIntN(64, BigInt(`0x${hex}`)).toString();
}

/**
 * Runs `fn` holding the PostgreSQL advisory lock of `key` on a connection of its own.
 * The lock is transaction-scoped: it is released by the COMMIT or ROLLBACK, or by the
 * server when the connection dies.
 */
export async function withAdvisoryLock<T>(
  pool: pg.Pool,
  key: string,
  fn: () => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (cause) {
    throw new NexusError('store_unavailable', 'the database is unreachable', { cause });
  }
  let broken = false;
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '${LOCK_WAIT}'`);
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryKey(key)]);
    } catch (cause) {
      broken = true;
      throw new NexusError('store_unavailable', 'the cluster lock could not be taken', { cause });
    }
    try {
      return await fn();
    } finally {
      await client.query('COMMIT').catch(() => {
        broken = true;
      });
    }
  } finally {
    if (broken) await client.query('ROLLBACK').catch(() => undefined);
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * The coordination of a node: pending links in `store` (sealed by `vault`), and the
 * refresh lock on `pool` when the store is PostgreSQL, else `workerLock` (a worker of
 * `nexus up --workers N` on SQLite: the primary's lock), else none beyond the process's
 * own single-flight.
 */
export function storeOAuthCoordination(options: {
  readonly store: Store;
  readonly vault: Vault;
  readonly pool: pg.Pool | undefined;
  readonly workerLock?: OAuthCoordination['exclusive'];
  readonly clock: () => number;
}): OAuthCoordination {
  const { store, vault, pool, workerLock, clock } = options;
  return {
    exclusive(key, fn) {
      if (pool !== undefined) return withAdvisoryLock(pool, key, fn);
      return workerLock === undefined ? fn() : workerLock(key, fn);
    },
    async putPending(stateHash, service, link, expiresAt) {
      const sealed = await vault.seal(sealPurpose(stateHash, service), Buffer.from(link, 'utf8'));
      await store.putOAuthPending({ stateHash, service, sealed, expiresAt }, clock());
    },
    pendingService(stateHash) {
      return store.peekOAuthPending(stateHash, clock());
    },
    async takePending(stateHash) {
      const row = await store.takeOAuthPending(stateHash, clock());
      if (row === undefined) return undefined;
      // A link that does not open under its row's binding is no link (fail closed: the
      // callback is refused `forbidden`, as for an unknown state).
      const opened = await vault
        .open(sealPurpose(stateHash, row.service), row.sealed)
        .catch(() => undefined);
      if (opened === undefined) return undefined;
      const link = opened.toString('utf8');
      return { service: row.service, link };
    },
  };
}
