// The persistence the audit writer needs, as a small interface of its own, plus an
// in-memory implementation (tests, single-run tools) and an adapter over the `Store`.
import type { AuditCheckpoint, AuditRow } from './chain.js';

/**
 * Where audit rows and checkpoints are made durable.
 *
 * `append` MUST write all rows in one transaction, durably, before resolving, and MUST
 * refuse (reject, writing nothing) if the first row's `prevHash` is not the hash of the
 * last stored row (or not GENESIS_HASH on an empty sink): this is what prevents forks
 * when two writers race. It resolves the seqs assigned, ascending.
 */
export interface AuditSink {
  append(rows: readonly AuditRow[]): Promise<number[]>;
  /**
   * Optional: appends the rows `build` makes from the sink's last row (undefined: empty),
   * reading that row in the same transaction as the writes (SQLite: `BEGIN IMMEDIATE`),
   * so several writers on one sink each extend the true head and none is refused for a
   * stale one. `build` runs synchronously inside the transaction; `hashAt` reads an
   * earlier row's hash. The link check of `append` applies. When present the audit
   * writer uses it instead of `append`.
   */
  appendLinked?(
    build: (
      last: { seq: number; hash: string } | undefined,
      hashAt: (seq: number) => string | undefined,
      refused: readonly boolean[],
    ) => AuditRow[],
    claims?: NonceClaims,
  ): Promise<number[]>;
  /** The last row, or undefined when empty. */
  last(): Promise<AuditRow | undefined>;
  /** Rows with `seq >= fromSeq`, ascending, at most `limit`. */
  read(options: { fromSeq: number; limit: number }): Promise<AuditRow[]>;
  insertCheckpoint(checkpoint: AuditCheckpoint): Promise<void>;
  /** Every checkpoint, ascending seq. */
  listCheckpoints(): Promise<AuditCheckpoint[]>;
  lastCheckpoint(): Promise<AuditCheckpoint | undefined>;
}

/**
 * A replay record made in the same transaction as the audit row of a request (`nexus up
 * --workers` on SQLite, issue 14 step 4): a (lease, nonce) pair in `replay_nonces`, so a
 * request forwarded by one worker is a replay at every other, with no write of its own,
 * and the record survives a crash exactly when the request record does.
 */
export interface NonceClaim {
  /** `replayKey(leaseId, nonce)` (proxy/replay-shared.ts). */
  readonly key: string;
  /** Milliseconds after which the record may be forgotten. */
  readonly forgetAt: number;
  /**
   * true: a live record of the same pair refuses this audit row (the request is a replay;
   * nothing of it is written). false: the pair is recorded if absent, the row is written
   * either way (a refusal's record: the pair stays spent).
   */
  readonly exclusive: boolean;
}

/**
 * The claims of one `appendLinked` batch: `claims[i]` goes with the batch's i-th record
 * (undefined: none), `now` decides which stored records have expired.
 */
export interface NonceClaims {
  readonly claims: readonly (NonceClaim | undefined)[];
  readonly now: number;
}

/** An in-memory {@link AuditSink} with the same contract; `rows`/`checkpoints` are exposed for tests. */
export interface MemoryAuditSink extends AuditSink {
  readonly rows: AuditRow[];
  readonly checkpoints: AuditCheckpoint[];
}

/** Creates an in-memory sink (a stand-in for the store in tests and tools). */
export function createMemoryAuditSink(): MemoryAuditSink {
  const rows: AuditRow[] = [];
  const checkpoints: AuditCheckpoint[] = [];
  return {
    rows,
    checkpoints,
    async append(batch) {
      await Promise.resolve();
      const last = rows.at(-1);
      const expectedPrev = last?.hash ?? '0'.repeat(64);
      let seq = last?.seq ?? 0;
      let prev = expectedPrev;
      for (const r of batch) {
        seq++;
        if (r.prevHash !== prev || r.seq !== seq) {
          throw Object.assign(new Error('audit append does not link to the chain'), {
            code: 'conflict',
          });
        }
        prev = r.hash;
      }
      const start = rows.length;
      for (const r of batch) rows.push({ ...r });
      return batch.map((_r, i) => rows[start + i]!.seq);
    },
    async last() {
      await Promise.resolve();
      const r = rows.at(-1);
      return r === undefined ? undefined : { ...r };
    },
    async read({ fromSeq, limit }) {
      await Promise.resolve();
      return rows
        .filter((r) => r.seq >= fromSeq)
        .slice(0, limit)
        .map((r) => ({ ...r }));
    },
    async insertCheckpoint(cp) {
      await Promise.resolve();
      if (checkpoints.some((c) => c.seq === cp.seq)) {
        throw Object.assign(new Error('checkpoint exists'), { code: 'conflict' });
      }
      checkpoints.push({ ...cp });
      checkpoints.sort((a, b) => a.seq - b.seq);
    },
    async listCheckpoints() {
      await Promise.resolve();
      return checkpoints.map((c) => ({ ...c }));
    },
    async lastCheckpoint() {
      await Promise.resolve();
      const c = checkpoints.at(-1);
      return c === undefined ? undefined : { ...c };
    },
  };
}

/** The store methods {@link auditSinkFromStore} uses (see `store/store.ts`). */
export interface AuditStoreLike {
  appendAudit(
    rows: {
      time: number;
      kind: string;
      requestId: string;
      record: string;
      prevHash: string;
      hash: string;
      agent?: string;
      service?: string;
      decision?: string;
      indexed?: boolean;
    }[],
  ): Promise<number[]>;
  lastAudit(): Promise<AuditRow | undefined>;
  readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]>;
  insertCheckpoint(row: AuditCheckpoint): Promise<void>;
  listCheckpoints(): Promise<AuditCheckpoint[]>;
  lastCheckpoint(): Promise<AuditCheckpoint | undefined>;
}

/** A chained row as the store writes it: index fields explicit, so no store re-parses JSON. */
function toStoreRow(r: AuditRow): Parameters<AuditStoreLike['appendAudit']>[0][number] {
  return {
    time: r.time,
    kind: r.kind,
    requestId: r.requestId,
    record: r.record,
    prevHash: r.prevHash,
    hash: r.hash,
    ...(r.index === undefined ? {} : { ...r.index, indexed: true }),
  };
}

/**
 * Adapts the server `Store` (or anything with its audit methods) to an {@link AuditSink}.
 * `appendAudit`, when given, replaces the store's own (e.g. a worker thread's connection).
 */
export function auditSinkFromStore(
  store: AuditStoreLike,
  appendAudit: AuditStoreLike['appendAudit'] = (rows) => store.appendAudit(rows),
): AuditSink {
  const pick = (r: AuditRow): AuditRow => ({
    seq: r.seq,
    time: r.time,
    kind: r.kind,
    requestId: r.requestId,
    record: r.record,
    prevHash: r.prevHash,
    hash: r.hash,
  });
  return {
    append: (rows) => appendAudit(rows.map(toStoreRow)),
    last: async () => {
      const r = await store.lastAudit();
      return r === undefined ? undefined : pick(r);
    },
    read: async (o) => (await store.readAudit(o)).map(pick),
    insertCheckpoint: (cp) => store.insertCheckpoint(cp),
    listCheckpoints: () => store.listCheckpoints(),
    lastCheckpoint: () => store.lastCheckpoint(),
  };
}

/** The SQLite store method behind {@link withLinkedAppend}. */
export interface LinkedAuditStore {
  appendAuditLinked(
    build: (
      last: { seq: number; hash: string } | undefined,
      hashAt: (seq: number) => string | undefined,
      refused: readonly boolean[],
    ) => (Parameters<AuditStoreLike['appendAudit']>[0][number] & { seq: number })[],
    claims?: NonceClaims,
  ): Promise<number[]>;
}

/** `sink` with `appendLinked` over the store's `appendAuditLinked` (the SQLite store). */
export function withLinkedAppend(sink: AuditSink, store: LinkedAuditStore): AuditSink {
  return {
    ...sink,
    appendLinked: (build, claims) =>
      store.appendAuditLinked(
        (last, hashAt, refused) =>
          build(last, hashAt, refused).map((r) => ({ seq: r.seq, ...toStoreRow(r) })),
        claims,
      ),
  };
}
