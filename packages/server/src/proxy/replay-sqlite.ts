/**
 * Replay protection shared by the workers of one node on its SQLite store
 * (`nexus up --workers N`, issue 13 and issue 14 step 4): a (lease, nonce) pair accepted
 * by one worker is a replay at every other, through one unique insert into
 * `replay_nonces` (migration 3, the table the PostgreSQL path uses).
 *
 * - Atomic: SQLite serialises writers on one file; `INSERT ... ON CONFLICT DO UPDATE ...
 *   WHERE forget_at <= now` changes one row or none, and none is the replay.
 * - Own connection, `synchronous = NORMAL`: the insert commits to the WAL without an
 *   fsync. It is durable before anything is forwarded all the same: the request's audit
 *   record is committed with an fsync of the same WAL after it (durable before
 *   forwarding), and an fsync makes every earlier frame of the file durable too.
 * - Never blocks the event loop on another connection's lock (`busy_timeout = 0`): a
 *   busy database is retried after a short pause, for up to `maxWaitMs`, then the request
 *   is refused with `replay_unavailable` (503), nothing forwarded (fail closed).
 */
import Database from 'better-sqlite3';
import { NexusError } from '@nexus-proxy/protocol';
import {
  forgetAtMs,
  replayKey,
  unavailable,
  type SharedReplayGuard,
  type SharedReplayOptions,
} from './replay-shared.js';
import { replayStatements } from '../store/queries.js';

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

/**
 * Opens the guard on the store file at `path` (the path the store itself was opened at).
 *
 * @param sweepIntervalMs how often expired rows are deleted (default 30 s; 0: never).
 * @example
 * const replay = createSqliteReplayGuard('/srv/nexus/.nexus/nexus.db', { skewSeconds: 5, clock: Date.now });
 * await replay.checkAndRecord(jti, nonce, expires); // replay_detected the second time, from any worker
 */
export function createSqliteReplayGuard(
  path: string,
  options: SharedReplayOptions & {
    readonly sweepIntervalMs?: number;
    readonly maxWaitMs?: number;
    readonly onSweepError?: (error: unknown) => void;
  },
): SharedReplayGuard {
  // The statements the PostgreSQL guard runs too (store/queries.ts), compiled once.
  const statements = replayStatements('sqlite');
  // Run with the arguments as they are (no binding per request): they are the parameters.
  if (!statements.record.positional || !statements.sweep.positional) {
    throw new Error('replay statements are not positional');
  }
  const db = new Database(path, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
  db.pragma('synchronous = NORMAL');
  const insert = db.prepare(statements.record.sql);
  const sweep = db.prepare(statements.sweep.sql);
  const maxWaitMs = options.maxWaitMs ?? 2000;
  const interval = options.sweepIntervalMs ?? 30_000;
  let timer: ReturnType<typeof setInterval> | undefined;
  if (interval > 0) {
    timer = setInterval(() => {
      try {
        sweep.run(options.clock());
      } catch (error) {
        // Busy or failed: the next sweep retries.
        options.onSweepError?.(error);
      }
    }, interval);
    timer.unref();
  }
  return {
    kind: 'sqlite',
    async checkAndRecord(leaseId, nonce, expires) {
      const key = replayKey(leaseId, nonce);
      const forgetAt = forgetAtMs(expires, options);
      const deadline = Date.now() + maxWaitMs;
      let pause = 1;
      for (;;) {
        let changes: number;
        try {
          changes = insert.run(
            ...statements.record.bind(key, forgetAt, options.clock()).parameters,
          ).changes;
        } catch (error) {
          if (!isBusy(error) || Date.now() >= deadline || !db.open) throw unavailable(error);
          await new Promise((r) => setTimeout(r, pause));
          pause = Math.min(pause * 2, 20);
          continue;
        }
        if (changes === 0) throw new NexusError('replay_detected');
        return;
      }
    },
    async close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      if (db.open) db.close();
    },
  };
}
