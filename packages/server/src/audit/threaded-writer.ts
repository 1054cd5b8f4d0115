// The audit writer of a SQLite file, run by a worker thread (`writer-thread.ts`): the
// thread owns the chain head, canonicalises and hashes each record and group-commits it
// through its own connection; the proxy's event loop posts a plain record and awaits its
// position (issue 14: the canonical JSON, the hash and the store's re-parse of each
// record's index fields were a fifth of the node's CPU per request, on the main thread
// and then again on the audit thread).
//
// Same contract as `createAuditWriter` (`AuditWriter`): `append` resolves only once the
// record is durable, so the proxy still forwards nothing before its request record is
// committed. The Authority's key never leaves this thread: the audit thread asks it to
// sign each checkpoint's payload, and hands each stored checkpoint back to
// `onCheckpoint`. When the thread dies, the appends waiting on it reject with
// `audit_unavailable` and the next append starts a new thread, which re-reads the head
// from the store and checks that the newest record reported durable is still there.
import { Worker } from 'node:worker_threads';
import { NexusError } from '@nexus-proxy/protocol';
import type { SqliteStoreOptions } from '../store/sqlite.js';
import type { AuditCheckpoint, ChainRecord } from './chain.js';
import type { NonceClaim } from './sink.js';
import type { AuditThreadInit, PlainError } from './writer-thread.js';
import type { AuditPosition, AuditWriter } from './writer.js';

/** Options of {@link openThreadedAuditWriter}. */
export interface ThreadedAuditWriterOptions {
  /**
   * Signs a checkpoint payload (its canonical JSON text): returns the key id and a JWS
   * compact serialisation whose payload is exactly `payloadText`.
   */
  signCheckpoint: (payloadText: string) => Promise<{ kid: string; jws: string }>;
  /** Every stored checkpoint (log it, append it to the checkpoint file); awaited. */
  onCheckpoint?: (checkpoint: AuditCheckpoint) => void | Promise<void>;
  /** A background checkpoint failed, or a stored checkpoint's `onCheckpoint` did. */
  onError?: (error: unknown) => void;
  /** Every append that fails because the store file was replaced or deleted. */
  onStoreFault?: (error: unknown) => void;
  checkpointEvery?: number;
  checkpointIntervalMs?: number;
  maxBatch?: number;
  /** How often the WAL is checkpointed by a thread of its own (`AuditThreadInit`). */
  walCheckpointMs?: number;
  /**
   * How long an append waits for a lock another connection holds, in ms (the audit thread
   * blocks; the request waiting on its record fails with `audit_unavailable` after it).
   * Default 1000: well above any write of the node's own, well below a client's patience.
   */
  busyTimeoutMs?: number;
  /** The main store's files (`SqliteStore.files`): the thread refuses to write elsewhere. */
  expectFiles?: SqliteStoreOptions['expectFiles'];
  /** The node lock, guarded by the thread too. */
  lock?: SqliteStoreOptions['lock'];
  /** For tests: another worker script. */
  workerUrl?: URL;
}

/** Default of {@link ThreadedAuditWriterOptions.busyTimeoutMs}. */
export const AUDIT_BUSY_TIMEOUT_MS = 1000;

/** An {@link AuditWriter} whose writing is done by a worker thread. */
export interface ThreadedAuditWriter extends AuditWriter {
  /** Stops the thread without waiting (after a failed `close`). Idempotent. */
  terminate(): Promise<void>;
}

interface Waiting {
  resolve: (p: AuditPosition) => void;
  reject: (error: unknown) => void;
}

type Reply =
  | { ready: true }
  | { failed: PlainError }
  | { done: [number, number, string][] }
  | { refused: [number, PlainError][] }
  | { checkpointed: { id: number; checkpoint?: AuditCheckpoint; error?: PlainError } }
  | { sign: { id: number; payloadText: string } }
  | { stored: { id: number; checkpoint: AuditCheckpoint } }
  | { error: PlainError }
  | { closed: true };

const WORKER_URL = new URL('./writer-thread.js', import.meta.url);

/** The error an append rejects with, rebuilt from the thread's plain data. */
function rebuild(e: PlainError): Error {
  const cause =
    e.cause === undefined ? undefined : Object.assign(new Error(e.message), { code: e.cause });
  if (
    e.code === 'audit_unavailable' ||
    e.code === 'internal_error' ||
    e.code === 'store_unavailable' ||
    e.code === 'replay_detected'
  ) {
    return new NexusError(e.code, e.message, { cause });
  }
  return Object.assign(new Error(e.message), { code: e.code, cause });
}

const unavailable = (cause?: unknown): NexusError =>
  new NexusError('audit_unavailable', 'audit record could not be written', { cause });

/**
 * Starts the audit thread for the SQLite file at `path` (already opened and migrated by
 * the main store) and resolves once it has read the chain head.
 *
 * @throws the thread's start-up error (e.g. the file cannot be opened).
 * @example
 * const audit = await openThreadedAuditWriter('.nexus/nexus.db', { signCheckpoint });
 * await audit.append(record); // durable now
 */
export async function openThreadedAuditWriter(
  path: string,
  options: ThreadedAuditWriterOptions,
): Promise<ThreadedAuditWriter> {
  const onError = options.onError ?? (() => undefined);
  let nextId = 1;
  let closed = false;
  let closing: Promise<void> | undefined;
  /** The newest position reported durable, handed to a restarted thread. */
  let durable: AuditPosition | undefined;
  let head: AuditPosition | undefined;
  let current: Promise<Running> | undefined;
  /** Records waiting for the next post (one message per turn of the event loop). */
  let outbox: [number, ChainRecord, NonceClaim | undefined][] = [];
  let flushing = false;

  interface Running {
    readonly worker: Worker;
    readonly waiting: Map<number, Waiting>;
    readonly checkpoints: Map<number, Waiting & { resolve: (c: unknown) => void }>;
    alive: boolean;
    readonly exited: Promise<void>;
    readonly closedByThread: Promise<void>;
  }

  const start = (): Promise<Running> => {
    const data: AuditThreadInit = {
      path,
      busyTimeoutMs: options.busyTimeoutMs ?? AUDIT_BUSY_TIMEOUT_MS,
      ...(options.expectFiles === undefined ? {} : { expectFiles: options.expectFiles }),
      ...(options.lock === undefined ? {} : { lock: options.lock }),
      ...(options.checkpointEvery === undefined
        ? {}
        : { checkpointEvery: options.checkpointEvery }),
      ...(options.checkpointIntervalMs === undefined
        ? {}
        : { checkpointIntervalMs: options.checkpointIntervalMs }),
      ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
      ...(options.walCheckpointMs === undefined
        ? {}
        : { walCheckpointMs: options.walCheckpointMs }),
      ...(durable === undefined ? {} : { durable }),
    };
    const starting: Promise<Running> = new Promise<Running>((resolve, reject) => {
      const worker = new Worker(options.workerUrl ?? WORKER_URL, { workerData: data });
      let onExit!: () => void;
      let onClosed!: () => void;
      const running: Running = {
        worker,
        waiting: new Map(),
        checkpoints: new Map(),
        alive: true,
        exited: new Promise<void>((r) => (onExit = r)),
        closedByThread: new Promise<void>((r) => (onClosed = r)),
      };
      let ready = false;
      const gone = (error: Error) => {
        if (!running.alive) return;
        running.alive = false;
        head = undefined;
        // The next append starts a new thread.
        if (current === starting) current = undefined;
        if (!ready) reject(error);
        const all = [...running.waiting.values(), ...running.checkpoints.values()];
        running.waiting.clear();
        running.checkpoints.clear();
        for (const w of all) w.reject(unavailable(error));
        onClosed();
      };
      worker.on('message', (reply: Reply) => {
        if ('ready' in reply) {
          ready = true;
          resolve(running);
        } else if ('failed' in reply) {
          gone(rebuild(reply.failed));
        } else if ('done' in reply) {
          for (const [id, seq, hash] of reply.done) {
            const w = running.waiting.get(id);
            if (w === undefined) continue;
            running.waiting.delete(id);
            if (durable === undefined || seq > durable.seq) durable = { seq, hash };
            head = durable;
            w.resolve({ seq, hash });
          }
        } else if ('refused' in reply) {
          for (const [id, error] of reply.refused) {
            const w = running.waiting.get(id);
            if (w === undefined) continue;
            running.waiting.delete(id);
            // A replay refused in the transaction leaves the chain as it was.
            if (error.code !== 'replay_detected') head = undefined;
            const err = rebuild(error);
            if (error.cause === 'store_unavailable' || error.code === 'store_unavailable') {
              options.onStoreFault?.(err);
            }
            w.reject(err);
          }
        } else if ('checkpointed' in reply) {
          const { id, checkpoint, error } = reply.checkpointed;
          const w = running.checkpoints.get(id);
          if (w === undefined) return;
          running.checkpoints.delete(id);
          if (error === undefined) w.resolve(checkpoint);
          else w.reject(rebuild(error));
        } else if ('sign' in reply) {
          const { id, payloadText } = reply.sign;
          options.signCheckpoint(payloadText).then(
            ({ kid, jws }) => worker.postMessage({ signed: { id, kid, jws } }),
            (error: unknown) =>
              worker.postMessage({
                signed: {
                  id,
                  error: { code: 'internal_error', message: (error as Error).message },
                },
              }),
          );
        } else if ('stored' in reply) {
          const { id, checkpoint } = reply.stored;
          void (async () => {
            try {
              await options.onCheckpoint?.(checkpoint);
            } catch (error) {
              onError(error);
            }
            worker.postMessage({ stored: id });
          })();
        } else if ('error' in reply) {
          onError(rebuild(reply.error));
        } else if ('closed' in reply) {
          onClosed();
        }
      });
      worker.on('error', (error) => gone(error));
      worker.on('exit', (code) => {
        gone(Object.assign(new Error(`audit thread exited (${code})`), { code: 'internal_error' }));
        onExit();
      });
    });
    return starting;
  };

  const flush = async (): Promise<void> => {
    flushing = false;
    const batch = outbox;
    outbox = [];
    let running: Running;
    try {
      current ??= start();
      running = await current;
      if (!running.alive) throw new Error('audit thread exited');
    } catch (error) {
      // The thread could not be started: these records fail closed; the next try again.
      current = undefined;
      const err = unavailable(error);
      for (const [id] of batch) {
        const w = pending.get(id);
        pending.delete(id);
        w?.reject(err);
      }
      return;
    }
    const ids: number[] = [];
    const records: ChainRecord[] = [];
    let claims: (NonceClaim | null)[] | undefined;
    for (const [i, [id, record, claim]] of batch.entries()) {
      const w = pending.get(id)!;
      pending.delete(id);
      running.waiting.set(id, w);
      ids.push(id);
      records.push(record);
      if (claim !== undefined) {
        claims ??= new Array<NonceClaim | null>(batch.length).fill(null);
        claims[i] = claim;
      }
    }
    // JSON text: a string crosses to the thread as a copy of its bytes, where a structured
    // clone of the objects cost three times JSON.stringify on this thread (issue 14).
    running.worker.postMessage({
      append: ids,
      records: JSON.stringify(records),
      ...(claims === undefined ? {} : { claims }),
    });
  };
  /** Appends not yet handed to a thread. */
  const pending = new Map<number, Waiting>();

  current = start();
  await current;
  head = undefined;

  const writer: ThreadedAuditWriter = {
    // The thread read the head when it started.
    async init() {},
    append(record, claim) {
      if (closed) return Promise.reject(unavailable());
      return new Promise<AuditPosition>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve, reject });
        outbox.push([id, record, claim]);
        if (!flushing) {
          flushing = true;
          // Every append made in this turn of the event loop goes in one message.
          setImmediate(() => void flush());
        }
      });
    },
    async checkpoint() {
      const running = await current;
      if (running === undefined || !running.alive) throw unavailable();
      const id = nextId++;
      return new Promise<AuditCheckpoint | undefined>((resolve, reject) => {
        running.checkpoints.set(id, {
          resolve: resolve as (c: unknown) => void,
          reject,
        });
        running.worker.postMessage({ checkpoint: id });
      });
    },
    close() {
      closing ??= (async () => {
        closed = true;
        // Appends made in this turn are posted first.
        while (flushing || pending.size > 0) await new Promise((r) => setImmediate(r));
        const running = await current?.catch(() => undefined);
        if (running === undefined || !running.alive) return;
        // The thread drains its queue, writes a final checkpoint and closes its connection.
        running.worker.postMessage('close');
        await running.closedByThread;
        await running.exited;
      })();
      return closing;
    },
    async terminate() {
      closed = true;
      const running = await current?.catch(() => undefined);
      if (running?.alive === true) await running.worker.terminate();
    },
    get head() {
      return head;
    },
  };
  return writer;
}
