/**
 * Replay protection shared by every node of a cluster (spec §9, REPLAY-SHARED): a
 * (lease, nonce) pair accepted by one node is a replay at every other.
 *
 * - Redis (`redis:` configured): one `SET key 1 NX PX ttl`, atomic in Redis; about one
 *   round trip to Redis per request, and the records live in Redis memory until
 *   their TTL. Redis MUST persist (AOF) or never restart within a signature window,
 *   or a restart forgets live nonces.
 * - PostgreSQL (a cluster without Redis): one unique insert into `replay_nonces`, atomic
 *   in the database; one round trip and one durable row write per request (WAL), and a
 *   periodic sweep deletes the expired rows.
 *
 * Both fail closed: when the record cannot be made, the request is refused with
 * `replay_unavailable` (503) and nothing is forwarded; both recover by themselves (the
 * pool and the Redis client reconnect). Keys are a hash of the lease id and the nonce, so
 * agent input never becomes a key name and every key has the same length.
 */
import { createHash } from 'node:crypto';
import { NexusError } from '@nexus-proxy/protocol';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { ReplayGuard } from './replay-cache.js';
import { replayStatements, type Template } from '../store/queries.js';

/** Options shared by the shared guards. */
export interface SharedReplayOptions {
  /** Seconds added to `expires` before a record may be forgotten. */
  readonly skewSeconds: number;
  readonly clock: () => number;
}

/** A shared guard with a lifetime. */
export interface SharedReplayGuard extends ReplayGuard {
  /** `redis` or `postgres` (logs, metrics). */
  readonly kind: 'redis' | 'postgres' | 'sqlite';
  checkAndRecord(leaseId: string, nonce: string, expires: number): Promise<void>;
  /** Stops background work (the sweep). Does not close the connection it was given. */
  close(): Promise<void>;
}

export function replayKey(leaseId: string, nonce: string): string {
  return createHash('sha256').update(leaseId).update('\n').update(nonce).digest('base64url');
}

/** The millisecond time after which a record may be forgotten (as the in-memory cache). */
export function forgetAtMs(expires: number, options: SharedReplayOptions): number {
  const nowSec = Math.floor(options.clock() / 1000);
  return (Math.max(expires + options.skewSeconds, nowSec) + 1) * 1000;
}

export function unavailable(cause: unknown): NexusError {
  return new NexusError('replay_unavailable', 'the shared replay cache is unavailable', { cause });
}

/**
 * Replay records in Redis. The client SHOULD be made with `enableOfflineQueue: false`,
 * so that a call fails at once while Redis is down instead of waiting in a queue.
 *
 * @param prefix key prefix (e.g. `nexus:`); the keys are `<prefix>replay:<hash>`.
 * @example
 * const replay = createRedisReplayGuard(redis, 'nexus:', { skewSeconds: 5, clock: Date.now });
 * await replay.checkAndRecord(jti, nonce, expires); // throws replay_detected the second time
 */
export function createRedisReplayGuard(
  redis: Redis,
  prefix: string,
  options: SharedReplayOptions,
): SharedReplayGuard {
  return {
    kind: 'redis',
    async checkAndRecord(leaseId, nonce, expires) {
      const ttl = Math.max(1, forgetAtMs(expires, options) - options.clock());
      let answer: string | null;
      try {
        answer = await redis.set(
          `${prefix}replay:${replayKey(leaseId, nonce)}`,
          '1',
          'PX',
          ttl,
          'NX',
        );
      } catch (error) {
        throw unavailable(error);
      }
      if (answer !== 'OK') throw new NexusError('replay_detected');
    },
    async close() {
      // The client belongs to the caller.
    },
  };
}

/**
 * Replay records in the shared PostgreSQL store (`replay_nonces`).
 *
 * @param sweepIntervalMs how often expired rows are deleted (default 30 s; 0: never).
 * @param onSweepError told when a sweep fails (the next one retries).
 */
export function createPostgresReplayGuard(
  pool: pg.Pool,
  options: SharedReplayOptions & {
    readonly sweepIntervalMs?: number;
    readonly onSweepError?: (error: unknown) => void;
  },
): SharedReplayGuard {
  // The statements the SQLite guard runs too (store/queries.ts), compiled once.
  const statements = replayStatements('postgres');
  const run = (t: Template, ...args: unknown[]) => {
    const { sql, parameters } = t.bind(...args);
    return pool.query(sql, parameters as unknown[]);
  };
  const interval = options.sweepIntervalMs ?? 30_000;
  let timer: ReturnType<typeof setInterval> | undefined;
  if (interval > 0) {
    timer = setInterval(() => {
      run(statements.sweep, options.clock()).catch((error: unknown) =>
        options.onSweepError?.(error),
      );
    }, interval);
    timer.unref();
  }
  return {
    kind: 'postgres',
    async checkAndRecord(leaseId, nonce, expires) {
      const now = options.clock();
      let inserted: number;
      try {
        // One statement, atomic across every node: the unique key decides.
        const result = await run(
          statements.record,
          replayKey(leaseId, nonce),
          forgetAtMs(expires, options),
          now,
        );
        inserted = result.rowCount ?? 0;
      } catch (error) {
        throw unavailable(error);
      }
      if (inserted === 0) throw new NexusError('replay_detected');
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
