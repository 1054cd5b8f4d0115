/**
 * The OAuth refresh lock of `nexus up --workers N` on SQLite (issue 13): what the
 * PostgreSQL advisory lock is to a cluster (oauth-coordination.ts), held by the primary
 * for its workers, so a rotating refresh token is spent by one worker only.
 *
 * Asks (ipc-peer.ts): `oauth.lock` `{ key, ticket }`, answered when the lock of `key` is
 * granted to that ticket (per key, first come first served); `oauth.unlock` `{ key,
 * ticket }` releases it (or withdraws a ticket still waiting). A ticket is the asking
 * worker's own number for one hold; the primary scopes it to the worker's pipe.
 *
 * - A wait longer than 30 s (the PostgreSQL lock's `lock_timeout`) fails with
 *   `store_unavailable`: the request fails closed, nothing is forwarded.
 * - A worker that exits (kill -9 included) releases every lock it held and every ticket
 *   it had waiting, so a dead worker never blocks the others. As with a PostgreSQL
 *   session lost mid-refresh, a worker killed after its refresh token reached the
 *   provider but before the rotated one was stored is the one window where the next
 *   holder spends the same refresh token; a provider that detects reuse then revokes the
 *   connection (`connection_expired`), never a wrong token.
 * - A primary that is gone fails the ask (`store_unavailable`), never a lock assumed.
 */
import { NexusError } from '@nexus-proxy/protocol';
import type { IpcPeer } from './ipc-peer.js';

const LOCK = 'oauth.lock';
const UNLOCK = 'oauth.unlock';

/** Longest wait for another worker's refresh of the same connection (as `LOCK_WAIT`). */
export const OAUTH_LOCK_WAIT_MS = 30_000;

/** Bounds on what a worker may ask (the key is `oauth2:<vault name>`). */
const MAX_KEY = 512;
const MAX_TICKET = 64;

interface Ticket {
  readonly owner: object;
  readonly ticket: string;
  readonly grant: () => void;
  readonly fail: (error: Error) => void;
  timer?: NodeJS.Timeout;
}

interface KeyState {
  holder: Ticket | undefined;
  readonly queue: Ticket[];
}

function waitExpired(): NexusError {
  return new NexusError('store_unavailable', undefined, {
    detail: "another worker's refresh of this OAuth connection did not end within 30 s",
  });
}

/**
 * In the primary: the lock table of every worker (one per primary). Keys are locked
 * independently; each key grants its tickets in arrival order.
 */
export class OAuthLockTable {
  readonly #waitMs: number;
  readonly #keys = new Map<string, KeyState>();

  /** `waitMs`: longest wait for a lock before `store_unavailable` (tests shorten it). */
  constructor(waitMs: number = OAUTH_LOCK_WAIT_MS) {
    this.#waitMs = waitMs;
  }

  /** Keys locked or waited for (tests). */
  get size(): number {
    return this.#keys.size;
  }

  /**
   * Resolves once `owner`'s `ticket` holds `key`; rejects `store_unavailable` after the
   * wait, or when the ticket is withdrawn or its owner released before the grant.
   */
  acquire(owner: object, key: string, ticket: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t: Ticket = { owner, ticket, grant: resolve, fail: reject };
      let state = this.#keys.get(key);
      if (state === undefined) {
        state = { holder: undefined, queue: [] };
        this.#keys.set(key, state);
      }
      if (state.holder === undefined) {
        state.holder = t;
        resolve();
        return;
      }
      const s = state;
      t.timer = setTimeout(() => {
        const at = s.queue.indexOf(t);
        if (at >= 0) s.queue.splice(at, 1);
        reject(waitExpired());
      }, this.#waitMs);
      t.timer.unref();
      s.queue.push(t);
    });
  }

  /** Releases `owner`'s `ticket` on `key` (held or still waiting); unknown: nothing. */
  release(owner: object, key: string, ticket: string): void {
    const state = this.#keys.get(key);
    if (state === undefined) return;
    if (state.holder?.owner === owner && state.holder.ticket === ticket) {
      this.#next(key, state);
      return;
    }
    const at = state.queue.findIndex((t) => t.owner === owner && t.ticket === ticket);
    if (at < 0) return;
    const [t] = state.queue.splice(at, 1);
    clearTimeout(t?.timer);
    t?.fail(new NexusError('store_unavailable', undefined, { detail: 'the wait was withdrawn' }));
  }

  /** Releases every lock `owner` holds and withdraws its waiting tickets (it exited). */
  releaseOwner(owner: object): void {
    for (const [key, state] of [...this.#keys]) {
      for (const t of state.queue.filter((q) => q.owner === owner)) {
        state.queue.splice(state.queue.indexOf(t), 1);
        clearTimeout(t.timer);
        t.fail(new NexusError('store_unavailable', undefined, { detail: 'the worker exited' }));
      }
      if (state.holder?.owner === owner) this.#next(key, state);
    }
  }

  /** Hands `key` to the next waiting ticket, or forgets the key. */
  #next(key: string, state: KeyState): void {
    const next = state.queue.shift();
    state.holder = next;
    if (next === undefined) {
      this.#keys.delete(key);
      return;
    }
    clearTimeout(next.timer);
    next.grant();
  }
}

/** The fields of a lock ask, checked (a worker is trusted, but a bad ask is no lock). */
function lockAsk(body: unknown): { key: string; ticket: string } {
  const { key, ticket } = (body ?? {}) as { key?: unknown; ticket?: unknown };
  if (
    typeof key !== 'string' ||
    typeof ticket !== 'string' ||
    key.length === 0 ||
    key.length > MAX_KEY ||
    ticket.length === 0 ||
    ticket.length > MAX_TICKET
  ) {
    throw new NexusError('internal_error', 'a malformed OAuth lock ask');
  }
  return { key, ticket };
}

/**
 * In the primary: answers one worker's lock asks from `table`. The worker is the owner of
 * its tickets: call `table.releaseOwner(peer)` when it exits.
 */
export function answerOAuthLocks(peer: IpcPeer, table: OAuthLockTable): void {
  peer.handle(LOCK, async (body) => {
    const { key, ticket } = lockAsk(body);
    await table.acquire(peer, key, ticket);
    return true;
  });
  peer.handle(UNLOCK, (body) => {
    const { key, ticket } = lockAsk(body);
    table.release(peer, key, ticket);
    return true;
  });
}

/**
 * In a worker: `exclusive(key, fn)` under the primary's lock (the `OAuthCoordination`
 * lock of a worker on SQLite). `fn` runs only once the primary granted the lock; any
 * failure to take it is `store_unavailable` and `fn` does not run (fail closed).
 *
 * @example
 * const exclusive = workerOAuthExclusive(primaryPeer());
 * await exclusive('oauth2:conn', () => refresh());
 */
export function workerOAuthExclusive(
  peer: IpcPeer,
  waitMs: number = OAUTH_LOCK_WAIT_MS,
): <T>(key: string, fn: () => Promise<T>) => Promise<T> {
  let next = 0;
  const unlock = (key: string, ticket: string) => {
    // Not awaited: the pipe keeps the order, so a later lock ask of this worker comes
    // after it. If the pipe is gone, the primary releases the lock when this worker exits.
    peer.ask(UNLOCK, { key, ticket }).catch(() => undefined);
  };
  return async <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const ticket = String(++next);
    try {
      // The primary answers `store_unavailable` after `waitMs`; the ask's own timeout is
      // the backstop for a primary that does not answer at all.
      await peer.ask(LOCK, { key, ticket }, waitMs + 5_000);
    } catch (cause) {
      // MUST: a ticket given up here is withdrawn, or a grant that crossed this failure
      // on the pipe would hold the lock for nobody.
      unlock(key, ticket);
      if (cause instanceof NexusError && cause.code === 'store_unavailable') throw cause;
      throw new NexusError('store_unavailable', undefined, {
        cause,
        detail: "the workers' OAuth refresh lock could not be taken",
      });
    }
    try {
      return await fn();
    } finally {
      unlock(key, ticket);
    }
  };
}
