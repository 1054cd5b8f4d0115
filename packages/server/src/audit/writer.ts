// The audit writer: appends records to the hash chain with group commit, and writes
// signed checkpoints.
//
// Security invariants:
// - `append` MUST NOT resolve before the sink reports the row durable: the proxy forwards
//   a request only after its record resolves (fail closed).
// - No gaps, no forks: the chain head (seq, hash) lives in memory only while every write
//   succeeded; after any failure it is re-read from the sink before the next write, and
//   the sink refuses a batch that does not link to its last row.
// - No silent rollback: a record once reported durable MUST still be in the sink, with
//   the same hash, when the head is re-read; if not (the store was replaced or truncated
//   under the node), the writer refuses every later append rather than chain onto it.
import { buildPreparedRow, checkpointPayloadText, GENESIS_HASH, prepareRecord } from './chain.js';
import type {
  AuditCheckpoint,
  AuditRow,
  ChainRecord,
  CheckpointPayload,
  PreparedRecord,
} from './chain.js';
import { NexusError } from '@nexus-proxy/protocol';
import type { AuditSink, NonceClaim } from './sink.js';

/** Options of {@link createAuditWriter}. */
export interface AuditWriterOptions {
  sink: AuditSink;
  /** Milliseconds since the epoch. */
  clock: () => number;
  /**
   * Signs a checkpoint: returns the key id and a JWS compact serialisation whose payload
   * is exactly `payloadText` (the canonical JSON of `payload`).
   */
  signCheckpoint: (
    payload: CheckpointPayload,
    payloadText: string,
  ) => Promise<{ kid: string; jws: string }>;
  /** Write a checkpoint after this many records (default 1000). */
  checkpointEvery?: number;
  /** Write a checkpoint this often when records were added (default 60 000 ms; 0: never by time). */
  checkpointIntervalMs?: number;
  /** Most records in one sink batch (default 1000). */
  maxBatch?: number;
  /** Called when a background checkpoint fails (appends are not affected). */
  onError?: (error: unknown) => void;
  /**
   * Called with every checkpoint once it is stored (e.g. to log it and append it to a
   * file outside the database, see `audit/checkpoint-file.ts`); awaited, and a failure
   * goes to `onError` without undoing the checkpoint.
   */
  onCheckpoint?: (checkpoint: AuditCheckpoint) => void | Promise<void>;
  /**
   * The newest position an earlier writer on this chain reported durable (a restarted
   * audit thread gets it from the main thread): the sink MUST still hold it, as for the
   * writer's own (see "No silent rollback").
   */
  durable?: AuditPosition;
}

/** Position of a durable record. */
export interface AuditPosition {
  seq: number;
  hash: string;
}

/** See {@link createAuditWriter}. */
export interface AuditWriter {
  /** Reads the chain head and the last checkpoint from the sink; starts the checkpoint timer. */
  init(): Promise<void>;
  /**
   * Appends a record; resolves once it is durable. With `claim`, the record's replay
   * record is made in the same transaction (see {@link NonceClaim}; the sink must support
   * claims: `appendLinked`).
   *
   * @throws NexusError `audit_unavailable` when the write fails or the writer is closed;
   *   `internal_error` when the record cannot be canonicalised; `replay_detected` when an
   *   exclusive claim met a live record (nothing of this record was written).
   */
  append(record: ChainRecord, claim?: NonceClaim): Promise<AuditPosition>;
  /** Writes a signed checkpoint over the current head, unless nothing was added since the last one. */
  checkpoint(): Promise<AuditCheckpoint | undefined>;
  /** Waits for pending appends, writes a final checkpoint and stops the timer. Idempotent. */
  close(): Promise<void>;
  /** The durable head in memory (undefined before init or after a failure). */
  readonly head: AuditPosition | undefined;
}

interface Pending {
  record: PreparedRecord;
  claim: NonceClaim | undefined;
  resolve: (p: AuditPosition) => void;
  reject: (e: unknown) => void;
}

/**
 * Creates the group-commit audit writer. Records appended in the same tick, or while a
 * write is in flight, go to the sink in one `append` batch.
 *
 * @example
 * const audit = createAuditWriter({ sink, clock: Date.now, signCheckpoint });
 * await audit.init();
 * const { seq } = await audit.append(record); // durable now
 */
export function createAuditWriter(options: AuditWriterOptions): AuditWriter {
  const { sink, clock } = options;
  const every = options.checkpointEvery ?? 1000;
  const intervalMs = options.checkpointIntervalMs ?? 60_000;
  const maxBatch = options.maxBatch ?? 1000;
  const onError = options.onError ?? (() => undefined);

  let head: AuditPosition | undefined;
  /** The newest position ever reported durable (survives a head reset). */
  let durable: AuditPosition | undefined = options.durable;
  /** Set when the sink lost durable records: every later append fails with it. */
  let broken: NexusError | undefined;
  let lastCheckpointSeq: number | undefined;
  const queue: Pending[] = [];
  let running = false;
  let scheduled = false;
  let closed = false;
  let closing: Promise<void> | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let drainWaiters: (() => void)[] = [];
  let checkpointChain: Promise<unknown> = Promise.resolve();

  const unavailable = (cause?: unknown): NexusError =>
    new NexusError('audit_unavailable', 'audit record could not be written', { cause });

  const lostDurable = (): NexusError =>
    new NexusError(
      'store_unavailable',
      'the audit chain in the store no longer holds records this node made durable (rolled back, truncated or replaced)',
    );

  async function loadHead(): Promise<AuditPosition> {
    const last = await sink.last();
    const loaded =
      last === undefined ? { seq: 0, hash: GENESIS_HASH } : { seq: last.seq, hash: last.hash };
    if (durable !== undefined) {
      // The newest durable record must still be there, unchanged.
      const kept =
        loaded.seq === durable.seq
          ? loaded
          : loaded.seq > durable.seq
            ? (await sink.read({ fromSeq: durable.seq, limit: 1 }))[0]
            : undefined;
      if (kept === undefined || kept.seq !== durable.seq || kept.hash !== durable.hash) {
        broken = lostDurable();
        throw broken;
      }
    }
    return loaded;
  }

  async function loadCheckpointSeq(): Promise<number> {
    return (await sink.lastCheckpoint())?.seq ?? 0;
  }

  function schedule(): void {
    if (running || scheduled) return;
    scheduled = true;
    // setImmediate: every append made in this turn of the event loop joins the batch.
    setImmediate(() => {
      scheduled = false;
      void run();
    });
  }

  async function run(): Promise<void> {
    running = true;
    while (queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      try {
        let prev: AuditPosition;
        let rows: AuditRow[] = [];
        /** The batch's records that were written, in `rows` order. */
        let written: Pending[] = batch;
        let refused: readonly boolean[] = [];
        const chain = (from: AuditPosition): AuditRow[] => {
          prev = from;
          written = refused.length === 0 ? batch : batch.filter((_p, i) => refused[i] !== true);
          return written.map((p) => {
            const row = buildPreparedRow(p.record, prev.seq + 1, prev.hash, clock());
            prev = { seq: row.seq, hash: row.hash };
            return row;
          });
        };
        const claimed = batch.some((p) => p.claim !== undefined);
        let seqs: number[];
        if (sink.appendLinked !== undefined) {
          // The head is read and extended inside the sink's write transaction: another
          // writer on the same store (a `--workers` node) may have moved it. The batch's
          // replay claims are made in the same transaction, before the rows are chained.
          const claims = claimed ? { claims: batch.map((p) => p.claim), now: clock() } : undefined;
          seqs = await sink.appendLinked((last, hashAt, refusedNow) => {
            refused = refusedNow;
            const at = last ?? { seq: 0, hash: GENESIS_HASH };
            if (durable !== undefined) {
              const kept =
                at.seq === durable.seq
                  ? at.hash
                  : at.seq > durable.seq
                    ? hashAt(durable.seq)
                    : undefined;
              if (kept !== durable.hash) {
                broken = lostDurable();
                throw broken;
              }
            }
            rows = chain(at);
            return rows;
          }, claims);
        } else {
          head ??= await loadHead();
          rows = chain(head);
          seqs = await sink.append(rows);
        }
        if (seqs.length !== rows.length || seqs.some((s, i) => s !== rows[i]!.seq)) {
          throw new Error('audit sink assigned unexpected seqs');
        }
        // Every record of the batch a replay: `prev` is the head read in the transaction.
        head = prev!;
        durable = prev!;
        rows.forEach((r, i) => written[i]!.resolve({ seq: r.seq, hash: r.hash }));
        if (written !== batch) {
          batch.forEach((p, i) => {
            if (refused[i] === true) p.reject(new NexusError('replay_detected'));
          });
        }
      } catch (error) {
        // Unknown state: re-read the head before the next write. Every waiting append
        // fails; nothing queued now was written.
        head = undefined;
        const failed = [...batch, ...queue.splice(0)];
        const err = unavailable(error);
        for (const p of failed) p.reject(err);
      }
      if (
        head !== undefined &&
        lastCheckpointSeq !== undefined &&
        head.seq - lastCheckpointSeq >= every
      ) {
        void checkpoint().catch(onError);
      }
    }
    running = false;
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const w of waiters) w();
  }

  function drained(): Promise<void> {
    if (!running && !scheduled && queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => drainWaiters.push(resolve));
  }

  function checkpoint(): Promise<AuditCheckpoint | undefined> {
    const next = checkpointChain.then(async () => {
      lastCheckpointSeq ??= await loadCheckpointSeq();
      const at = head;
      if (at === undefined || at.seq === 0 || at.seq <= lastCheckpointSeq) return undefined;
      const payload: CheckpointPayload = { v: 1, seq: at.seq, hash: at.hash, time: clock() };
      const { kid, jws } = await options.signCheckpoint(payload, checkpointPayloadText(payload));
      const cp: AuditCheckpoint = { seq: at.seq, hash: at.hash, time: payload.time, kid, jws };
      await sink.insertCheckpoint(cp);
      lastCheckpointSeq = at.seq;
      if (options.onCheckpoint !== undefined) {
        try {
          await options.onCheckpoint(cp);
        } catch (error) {
          onError(error);
        }
      }
      return cp;
    });
    checkpointChain = next.catch(() => undefined);
    return next;
  }

  return {
    async init() {
      head = await loadHead();
      lastCheckpointSeq = await loadCheckpointSeq();
      if (intervalMs > 0 && timer === undefined && !closed) {
        timer = setInterval(() => {
          checkpoint().catch(onError);
        }, intervalMs);
        timer.unref();
      }
    },
    append(record, claim) {
      if (closed) return Promise.reject(unavailable());
      if (claim !== undefined && sink.appendLinked === undefined) {
        // Fail closed: a claim this sink cannot make would be a replay let through.
        return Promise.reject(
          new NexusError('internal_error', 'this audit sink cannot record replay claims'),
        );
      }
      if (broken !== undefined) return Promise.reject(unavailable(broken));
      let prepared: PreparedRecord;
      try {
        // Fail this record alone, before it joins a batch, if it cannot be canonicalised;
        // the canonical members are kept, so the record is serialised once.
        prepared = prepareRecord(record);
      } catch (error) {
        return Promise.reject(error);
      }
      return new Promise<AuditPosition>((resolve, reject) => {
        queue.push({ record: prepared, claim, resolve, reject });
        schedule();
      });
    },
    checkpoint,
    close() {
      closing ??= (async () => {
        closed = true;
        if (timer !== undefined) clearInterval(timer);
        timer = undefined;
        await drained();
        await checkpoint();
      })();
      return closing;
    },
    get head() {
      return head;
    },
  };
}
