// The audit writer's thread (see `threaded-writer.ts`): it owns the chain head of a SQLite
// store. It canonicalises and hashes each record, group-commits the rows through its own
// connection (INSERTs, commit, fsync with synchronous=FULL, SQLite's WAL checkpoints) and
// answers each record's position once it is durable, so the proxy's event loop only
// posts a plain record and waits (issue 14).
//
// It holds no key: a checkpoint's payload is signed by the main thread (the Authority's
// key stays there) and each stored checkpoint is handed back to it (log line, checkpoint
// file). This thread may wait for a lock, but only for a bounded time: a request waits on
// its record, so a lock held elsewhere fails it fast (`audit_unavailable`, cause
// SQLITE_BUSY).
//
// Protocol (parent -> thread): `{ append: [id, ...], records: '[record, ...]', claims?:
// [claim | null, ...] }` (the records as JSON text: an `undefined` member is left out, as
// in canonical JSON; a claim is the record's replay record, `sink.ts` NonceClaim); `{ checkpoint: id }`;
// `{ signed: { id, kid, jws } | { id, error } }`; `{ stored: id }` (a checkpoint handed
// over is dealt with); `'close'`. Thread -> parent: `{ ready: true }` once the store is
// open and the head read, else `{ failed: error }` and exit; `{ done: [[id, seq, hash],
// ...] }`; `{ refused: [[id, error], ...] }`; `{ checkpointed: { id, checkpoint } }`;
// `{ sign: { id, payloadText } }`; `{ stored: { id, checkpoint } }`; `{ error: error }` (a
// background checkpoint failed); `{ closed: true }`.
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { openSqliteStore, type SqliteStoreOptions } from '../store/sqlite.js';
import type { AuditCheckpoint, ChainRecord } from './chain.js';
import { auditSinkFromStore, withLinkedAppend, type NonceClaim } from './sink.js';
import { createAuditWriter, type AuditPosition } from './writer.js';
import type { CheckpointerInit } from './checkpointer-thread.js';

/** What the thread is started with (`workerData`). */
export interface AuditThreadInit {
  path: string;
  /** How long an append waits for another connection's lock (blocking this thread). */
  busyTimeoutMs: number;
  expectFiles?: SqliteStoreOptions['expectFiles'];
  lock?: SqliteStoreOptions['lock'];
  checkpointEvery?: number;
  checkpointIntervalMs?: number;
  maxBatch?: number;
  /** The newest position an earlier thread reported durable (after a restart). */
  durable?: AuditPosition;
  /**
   * How often the checkpointer thread copies the WAL into the database, in ms (default
   * {@link WAL_CHECKPOINT_MS}); 0: no checkpointer, this connection checkpoints as SQLite
   * does by default (every 1,000 WAL pages, inside a commit).
   */
  walCheckpointMs?: number;
}

/** Default of {@link AuditThreadInit.walCheckpointMs}. */
export const WAL_CHECKPOINT_MS = 200;
/**
 * With a checkpointer, this connection still checkpoints when the WAL reaches this many
 * pages (64 MiB of 4 KiB pages): a backstop that keeps the WAL bounded if the checkpointer
 * falls far behind or stopped.
 */
export const AUDIT_WAL_BACKSTOP_PAGES = 16_384;

/** An error as plain data (errors of custom classes do not cross threads intact). */
export interface PlainError {
  code: string;
  message: string;
  /** The code of the error's cause (e.g. `store_unavailable`, `SQLITE_BUSY`). */
  cause?: string;
}

function plain(error: unknown): PlainError {
  const e = error as { code?: unknown; message?: unknown; cause?: unknown };
  const cause = (e.cause as { code?: unknown } | undefined)?.code;
  return {
    code: typeof e.code === 'string' ? e.code : 'internal_error',
    message: typeof e.message === 'string' ? e.message : 'audit append failed',
    ...(typeof cause === 'string' ? { cause } : {}),
  };
}

type Message =
  | { append: number[]; records: string; claims?: (NonceClaim | null)[] }
  | { checkpoint: number }
  | { signed: { id: number; kid: string; jws: string } | { id: number; error: PlainError } }
  | { stored: number }
  | 'close';

const port = parentPort;
if (port === null) throw new Error('writer-thread must run in a worker thread');
const init = workerData as AuditThreadInit;

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
    ...(init.walCheckpointMs === 0 ? {} : { walAutocheckpoint: AUDIT_WAL_BACKSTOP_PAGES }),
  });
} catch (error) {
  port.postMessage({ failed: plain(error) });
  port.close();
  process.exit(1);
}

/** The WAL checkpointer (checkpointer-thread.ts), stopped before the store closes. */
const checkpointer =
  init.walCheckpointMs === 0
    ? undefined
    : new Worker(new URL('./checkpointer-thread.js', import.meta.url), {
        workerData: {
          path: init.path,
          intervalMs: init.walCheckpointMs ?? WAL_CHECKPOINT_MS,
          busyTimeoutMs: init.busyTimeoutMs,
          ...(init.expectFiles === undefined ? {} : { expectFiles: init.expectFiles }),
          ...(init.lock === undefined ? {} : { lock: init.lock }),
        } satisfies CheckpointerInit,
      });
let checkpointerClosed: Promise<void> = Promise.resolve();
if (checkpointer !== undefined) {
  checkpointerClosed = new Promise<void>((resolve) => checkpointer.once('exit', () => resolve()));
  const failed = (error: unknown) =>
    port.postMessage({
      error: { code: 'internal_error', message: `WAL checkpointer: ${plain(error).message}` },
    });
  checkpointer.on('message', (m: { error?: PlainError }) => {
    if (m.error !== undefined) failed(m.error);
  });
  checkpointer.on('error', failed);
}
/** Stops the checkpointer (its last checkpoint, if one is running, ends first). */
function stopCheckpointer(): Promise<void> {
  checkpointer?.postMessage('close');
  return checkpointerClosed;
}

let nextCall = 1;
const calls = new Map<number, { resolve: (v: never) => void; reject: (e: unknown) => void }>();
/** Asks the main thread and waits for its answer (`signed` or `stored`). */
function ask<T>(message: (id: number) => unknown): Promise<T> {
  const id = nextCall++;
  return new Promise<T>((resolve, reject) => {
    calls.set(id, { resolve: resolve as (v: never) => void, reject });
    port!.postMessage(message(id));
  });
}
function answer(id: number, value: unknown, error?: PlainError): void {
  const call = calls.get(id);
  if (call === undefined) return;
  calls.delete(id);
  if (error === undefined) call.resolve(value as never);
  else call.reject(Object.assign(new Error(error.message), { code: error.code }));
}

const writer = createAuditWriter({
  // Each batch reads and extends the chain head inside its BEGIN IMMEDIATE transaction,
  // so the processes of a `--workers` node can share one store file.
  sink: withLinkedAppend(auditSinkFromStore(store), store),
  clock: Date.now,
  ...(init.checkpointEvery === undefined ? {} : { checkpointEvery: init.checkpointEvery }),
  ...(init.checkpointIntervalMs === undefined
    ? {}
    : { checkpointIntervalMs: init.checkpointIntervalMs }),
  ...(init.maxBatch === undefined ? {} : { maxBatch: init.maxBatch }),
  ...(init.durable === undefined ? {} : { durable: init.durable }),
  signCheckpoint: (_payload, payloadText) =>
    ask<{ kid: string; jws: string }>((id) => ({ sign: { id, payloadText } })),
  onCheckpoint: (checkpoint: AuditCheckpoint) =>
    ask<void>((id) => ({ stored: { id, checkpoint } })),
  onError: (error) => port.postMessage({ error: plain(error) }),
});

/** Answers of one batch of appends, posted together once the batch is settled. */
function append(ids: number[], json: string, claims?: (NonceClaim | null)[]): void {
  let records: ChainRecord[];
  try {
    records = JSON.parse(json) as ChainRecord[];
  } catch (error) {
    port!.postMessage({ refused: ids.map((id) => [id, plain(error)]) });
    return;
  }
  const batch = ids.map((id, i) => [id, records[i]!] as const);
  const done: [number, number, string][] = [];
  const refused: [number, PlainError][] = [];
  let left = batch.length;
  const settle = () => {
    if (--left > 0) return;
    if (done.length > 0) port!.postMessage({ done });
    if (refused.length > 0) port!.postMessage({ refused });
  };
  for (const [i, [id, record]] of batch.entries()) {
    writer.append(record, claims?.[i] ?? undefined).then(
      (p) => {
        done.push([id, p.seq, p.hash]);
        settle();
      },
      (error: unknown) => {
        refused.push([id, plain(error)]);
        settle();
      },
    );
  }
}

port.on('message', (message: Message) => {
  if (message === 'close') {
    void writer
      .close()
      .catch((error: unknown) => port.postMessage({ error: plain(error) }))
      .then(() => stopCheckpointer())
      .then(() => store.close())
      .finally(() => {
        port.postMessage({ closed: true });
        port.close();
      });
    return;
  }
  if ('append' in message) append(message.append, message.records, message.claims);
  else if ('checkpoint' in message) {
    const id = message.checkpoint;
    writer.checkpoint().then(
      (checkpoint) => port.postMessage({ checkpointed: { id, checkpoint } }),
      (error: unknown) => port.postMessage({ checkpointed: { id, error: plain(error) } }),
    );
  } else if ('signed' in message) {
    const s = message.signed;
    if ('error' in s) answer(s.id, undefined, s.error);
    else answer(s.id, { kid: s.kid, jws: s.jws });
  } else if ('stored' in message) answer(message.stored, undefined);
});

writer.init().then(
  () => port.postMessage({ ready: true }),
  (error: unknown) => {
    port.postMessage({ failed: plain(error) });
    void store.close().finally(() => {
      port.close();
      process.exit(1);
    });
  },
);
