// Audit appends for a SQLite file, done by a worker thread (`sqlite-audit-worker.ts`)
// with its own connection. The proxy awaits every request record before forwarding; on
// the main thread, the synchronous INSERT + commit + fsync of each group commit (and
// SQLite's occasional WAL checkpoint) blocked every other request for its duration,
// which was a quarter of the main thread's busy time and most of the tail latency.
//
// Guarantees are the store's: `append` resolves only after the worker's transaction is
// durable, and the store refuses rows that do not link to its last row, so a batch is
// written whole or not at all. When the worker dies, the appends waiting on it reject
// (the audit writer then fails those requests closed and re-reads the chain head) and
// the next append starts a new worker.
import { Worker } from 'node:worker_threads';
import type { SqliteStoreOptions } from './sqlite.js';
import type { AuditAppend } from './store.js';

/** Options of {@link openSqliteAuditAppender}. */
export interface SqliteAuditAppenderOptions {
  /**
   * How long an append waits for a lock another connection holds, in ms (the worker
   * thread blocks; the request waiting on its record fails with `audit_unavailable`
   * after it). Default 1000: well above any write of the node's own, well below a
   * client's patience.
   */
  busyTimeoutMs?: number;
  /** The main store's files (`SqliteStore.files`): the worker refuses to write elsewhere. */
  expectFiles?: SqliteStoreOptions['expectFiles'];
  /** The node lock, guarded by the worker too. */
  lock?: SqliteStoreOptions['lock'];
  /** For tests: another worker script. */
  workerUrl?: URL;
}

/** Default of {@link SqliteAuditAppenderOptions.busyTimeoutMs}. */
export const AUDIT_BUSY_TIMEOUT_MS = 1000;

/** Appends audit rows off the main thread; see {@link openSqliteAuditAppender}. */
export interface SqliteAuditAppender {
  /** Same contract as `Store.appendAudit`. */
  append(rows: AuditAppend[]): Promise<number[]>;
  /** Waits for the appends in flight, then stops the worker. Idempotent. */
  close(): Promise<void>;
}

interface Waiting {
  resolve: (seqs: number[]) => void;
  reject: (error: Error) => void;
}

type Reply =
  | { ready: true }
  | { failed: { code: string; message: string } }
  | { id: number; seqs: number[] }
  | { id: number; error: { code: string; message: string } };

const WORKER_URL = new URL('./sqlite-audit-worker.js', import.meta.url);

function storeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * Starts the worker for the SQLite file at `path` (already opened and migrated by the
 * main store) and resolves once its connection is open.
 *
 * @throws the worker's start-up error (e.g. the file cannot be opened).
 * @example
 * const appender = await openSqliteAuditAppender('.nexus/nexus.db');
 * await appender.append(rows); // durable
 */
export async function openSqliteAuditAppender(
  path: string,
  options: SqliteAuditAppenderOptions = {},
): Promise<SqliteAuditAppender> {
  let nextId = 1;
  let closed = false;
  let current: Promise<Running> | undefined;

  /** One worker and the appends waiting on it: a worker's death fails only its own. */
  interface Running {
    readonly worker: Worker;
    readonly waiting: Map<number, Waiting>;
    alive: boolean;
    /** Resolves once the worker has exited. */
    readonly exited: Promise<void>;
  }

  const start = (): Promise<Running> => {
    const starting: Promise<Running> = new Promise<Running>((resolve, reject) => {
      const worker = new Worker(options.workerUrl ?? WORKER_URL, {
        workerData: {
          path,
          busyTimeoutMs: options.busyTimeoutMs ?? AUDIT_BUSY_TIMEOUT_MS,
          expectFiles: options.expectFiles,
          lock: options.lock,
        },
      });
      let onExit!: () => void;
      const running: Running = {
        worker,
        waiting: new Map(),
        alive: true,
        exited: new Promise<void>((r) => (onExit = r)),
      };
      let ready = false;
      const gone = (error: Error) => {
        running.alive = false;
        // The next append starts a new worker.
        if (current === starting) current = undefined;
        if (!ready) reject(error);
        const all = [...running.waiting.values()];
        running.waiting.clear();
        for (const w of all) w.reject(error);
      };
      worker.on('message', (reply: Reply) => {
        if ('ready' in reply) {
          ready = true;
          resolve(running);
          return;
        }
        if ('failed' in reply) {
          gone(storeError(reply.failed.code, reply.failed.message));
          return;
        }
        const w = running.waiting.get(reply.id);
        if (w === undefined) return;
        running.waiting.delete(reply.id);
        if ('seqs' in reply) w.resolve(reply.seqs);
        else w.reject(storeError(reply.error.code, reply.error.message));
      });
      worker.on('error', (error) => gone(error));
      worker.on('exit', (code) => {
        gone(storeError('internal_error', `audit worker exited (${code})`));
        onExit();
      });
    });
    return starting;
  };

  current = start();
  await current;

  return {
    async append(rows) {
      if (rows.length === 0) return [];
      if (closed) throw storeError('internal_error', 'audit appender is closed');
      current ??= start();
      const running = await current;
      if (!running.alive) throw storeError('internal_error', 'audit worker exited');
      return new Promise<number[]>((resolve, reject) => {
        const id = nextId++;
        running.waiting.set(id, { resolve, reject });
        running.worker.postMessage({ id, rows });
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      const running = await current?.catch(() => undefined);
      if (running === undefined || !running.alive) return;
      // Appends in flight get their answer first (or fail, if the worker dies meanwhile).
      while (running.alive && running.waiting.size > 0) {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (!running.alive) return;
      running.worker.postMessage('close');
      await running.exited;
    },
  };
}
