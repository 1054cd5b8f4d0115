// Worker thread that appends audit rows to the SQLite file through its own connection,
// so the INSERTs, the commit and its fsync (synchronous=FULL), and SQLite's WAL
// checkpoints never block the proxy's event loop. See `sqlite-audit-appender.ts`.
// This thread may wait for a lock, but only for a bounded time: a request waits on its
// record, so a lock held elsewhere fails it fast (`audit_unavailable`, cause SQLITE_BUSY).
//
// Protocol: the worker posts `{ ready: true }` once its connection is open (or
// `{ failed: { code, message } }` and exits); the parent posts `{ id, rows }`; the worker
// answers `{ id, seqs }` once the transaction is durable, or `{ id, error: { code, message } }`
// when it is not: nothing was written, or it went into a store file that was deleted or
// replaced meanwhile (`store_unavailable`; the connection then refuses every later append).
// `'close'` closes the connection and ends the worker.
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite.js';
import type { AuditAppend } from './store.js';

interface Init {
  path: string;
  /** How long an append waits for another connection's lock (blocking this thread). */
  busyTimeoutMs: number;
  expectFiles?: SqliteStoreOptions['expectFiles'];
  lock?: SqliteStoreOptions['lock'];
}

const port = parentPort;
if (port === null) throw new Error('sqlite-audit-worker must run in a worker thread');
const init = workerData as Init;

/** A store error as plain data (errors of custom classes do not cross threads intact). */
function plain(error: unknown): { code: string; message: string } {
  const e = error as { code?: unknown; message?: unknown };
  return {
    code: typeof e.code === 'string' ? e.code : 'internal_error',
    message: typeof e.message === 'string' ? e.message : 'audit append failed',
  };
}

let store: ReturnType<typeof openSqliteStore>;
try {
  // The main connection created and migrated the store: this one never creates a file
  // (which would open and close the store's descriptor and drop the process's locks), and
  // it checks the files are still the ones the main connection opened.
  store = openSqliteStore(init.path, {
    create: false,
    migrate: false,
    blockOnBusy: true,
    busyTimeoutMs: init.busyTimeoutMs,
    ...(init.expectFiles === undefined ? {} : { expectFiles: init.expectFiles }),
    ...(init.lock === undefined ? {} : { lock: init.lock }),
  });
} catch (error) {
  port.postMessage({ failed: plain(error) });
  port.close();
  process.exit(1);
}

port.on('message', (message: { id: number; rows: AuditAppend[] } | 'close') => {
  if (message === 'close') {
    void store.close().then(() => port.close());
    return;
  }
  store.appendAudit(message.rows).then(
    (seqs) => port.postMessage({ id: message.id, seqs }),
    (error: unknown) => port.postMessage({ id: message.id, error: plain(error) }),
  );
});
port.postMessage({ ready: true });
