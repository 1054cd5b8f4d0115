// Worker thread that appends audit rows to the SQLite file through its own connection,
// so the INSERTs, the commit and its fsync (synchronous=FULL), and SQLite's WAL
// checkpoints never block the proxy's event loop. See `sqlite-audit-appender.ts`.
//
// Protocol: the worker posts `{ ready: true }` once its connection is open (or
// `{ failed: { code, message } }` and exits); the parent posts `{ id, rows }`; the worker
// answers `{ id, seqs }` once the transaction is durable, or `{ id, error: { code, message } }`
// when nothing was written. `'close'` closes the connection and ends the worker.
import { parentPort, workerData } from 'node:worker_threads';
import { openSqliteStore } from './sqlite.js';
import type { AuditAppend } from './store.js';

interface Init {
  path: string;
  busyTimeoutMs?: number;
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
  store = openSqliteStore(init.path, {
    ...(init.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: init.busyTimeoutMs }),
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
