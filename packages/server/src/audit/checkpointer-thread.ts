// The audit thread's WAL checkpointer (issue 14): a thread of its own, with its own
// connection, that copies the WAL's committed pages into the database file every
// `intervalMs` with `wal_checkpoint(PASSIVE)`, which waits for no reader or writer.
//
// Why a thread: SQLite checkpoints on the connection whose commit finds the WAL longer than
// `wal_autocheckpoint` pages, inside that commit. On the audit thread that stalled every
// request waiting on its record for the length of a checkpoint (about 1,000 pages written
// and fsynced: 5 to 50 ms here, several times a second at 500 req/s), the largest share
// of the p99 at a steady rate. The audit thread's connection now checkpoints only as a
// backstop (`AUDIT_WAL_BACKSTOP_PAGES`), when this thread falls far behind or is gone.
//
// Protocol (parent -> thread): `'close'`. Thread -> parent: `{ error: PlainError }` once,
// when a checkpoint fails (the store's files were replaced, the disk is full...): the
// thread then stops checkpointing and the backstop takes over; `{ closed: true }`.
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore, type SqliteStoreOptions } from '../store/sqlite.js';

/** What the thread is started with (`workerData`). */
export interface CheckpointerInit {
  path: string;
  intervalMs: number;
  busyTimeoutMs: number;
  expectFiles?: SqliteStoreOptions['expectFiles'];
  lock?: SqliteStoreOptions['lock'];
}

const port = parentPort;
if (port === null) throw new Error('checkpointer-thread must run in a worker thread');
const init = workerData as CheckpointerInit;

const plain = (error: unknown) => {
  const e = error as { code?: unknown; message?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : 'internal_error',
    message: typeof e.message === 'string' ? e.message : 'WAL checkpoint failed',
  };
};

const store = openSqliteStore(init.path, {
  create: false,
  migrate: false,
  blockOnBusy: true,
  busyTimeoutMs: init.busyTimeoutMs,
  ...(init.expectFiles === undefined ? {} : { expectFiles: init.expectFiles }),
  ...(init.lock === undefined ? {} : { lock: init.lock }),
});

let running = false;
const timer = setInterval(() => {
  if (running) return;
  running = true;
  store.checkpointWal().then(
    () => (running = false),
    (error: unknown) => {
      clearInterval(timer);
      port.postMessage({ error: plain(error) });
    },
  );
}, init.intervalMs);

port.on('message', (message: unknown) => {
  if (message !== 'close') return;
  clearInterval(timer);
  void store.close().finally(() => {
    port.postMessage({ closed: true });
    port.close();
  });
});
