/**
 * `GET /v1/status` of `nexus up --workers N`: one answer for the node, whichever worker
 * serves it. The worker asks its primary; the primary asks every worker for its own status
 * (the document of status.ts) and answers with them all; the worker merges them
 * ({@link nodeWideStatus}).
 *
 * What the merge makes of the workers' documents (docs/operations.md, `nexus status`):
 * the shared figures (agents, leases, services, the audit head and checkpoint: one store)
 * are the asking worker's; the node's start and uptime are the primary's; the audit
 * backlog (`pending_records` summed, `lag_seconds` the largest) and `approvals_pending`
 * (summed) are the node's; `workers` lists each worker (1..N) with its own figures. A
 * worker that does not answer within 3 s is listed `unreachable` and the status is
 * `degraded`: the answer still comes, since an operator looks at the status most when
 * something is wrong.
 *
 * Asks (ipc-peer.ts): `status.node` (worker to primary), answered {@link Gathered};
 * `status.worker` (primary to each worker), answered with the worker's own document.
 * Names, counts and times only: never a secret.
 */
import { NexusError } from '@nexus-proxy/protocol';
import { primaryPeer, type IpcPeer } from './ipc-peer.js';
import type { NodeStatusDocument } from './status.js';

const NODE_TOPIC = 'status.node';
const WORKER_TOPIC = 'status.worker';
/** How long the primary waits for each worker's own status. */
const WORKER_TIMEOUT_MS = 3000;

/** One worker slot as the primary sees it. */
export interface WorkerSlot {
  readonly id: number;
  /** Its pipe; undefined while the slot has no live worker (it is being restarted). */
  readonly peer: IpcPeer | undefined;
  readonly pid: number | undefined;
  /** How many times the primary started this slot's worker again. */
  readonly restarts: number;
}

/** The primary's answer to `status.node`. */
export interface Gathered {
  /** The primary's start (ms). */
  readonly startedAt: number;
  readonly workers: readonly {
    readonly id: number;
    readonly pid: number | null;
    readonly restarts: number;
    /** The worker's own document; undefined when it did not answer. */
    readonly status?: NodeStatusDocument;
  }[];
}

/** In the primary: answers a worker's `status.node` with every worker's own status. */
export function answerStatus(
  peer: IpcPeer,
  slots: () => readonly WorkerSlot[],
  startedAt: number,
): void {
  peer.handle(NODE_TOPIC, async (): Promise<Gathered> => {
    const workers = await Promise.all(
      slots().map(async (slot) => {
        const base = { id: slot.id, pid: slot.pid ?? null, restarts: slot.restarts };
        if (slot.peer === undefined) return base;
        try {
          const status = await slot.peer.ask<NodeStatusDocument>(
            WORKER_TOPIC,
            null,
            WORKER_TIMEOUT_MS,
          );
          return { ...base, status };
        } catch {
          return base;
        }
      }),
    );
    return { startedAt, workers };
  });
}

/**
 * In a worker: answers the primary's `status.worker` with `local` (this worker's own
 * document), and returns what `GET /v1/status` answers: the node's. `peer`: the pipe to
 * the primary (default: this worker's).
 *
 * @throws NexusError `internal_error` when the primary does not answer within 10 s.
 */
export function shareWorkerStatus(
  self: number,
  local: () => Promise<NodeStatusDocument>,
  clock: () => number,
  peer: IpcPeer = primaryPeer(),
): () => Promise<NodeWideStatus> {
  peer.handle(WORKER_TOPIC, () => local());
  return async () =>
    nodeWideStatus(self, await peer.ask<Gathered>(NODE_TOPIC, null, 10_000), clock());
}

/** One worker in the node's status. */
export interface WorkerStatus {
  readonly id: number;
  readonly pid: number | null;
  /** `unreachable`: it did not answer in time, or it is being started again. */
  readonly status: 'ok' | 'unreachable';
  readonly restarts: number;
  readonly started_at: string | null;
  readonly uptime_seconds: number | null;
  readonly policy_hash: string | null;
  readonly audit: { readonly pending_records: number; readonly lag_seconds: number } | null;
  readonly approvals_pending: number | null;
}

/** The node's status under `--workers`: a status document and its `workers`. */
export type NodeWideStatus = Omit<NodeStatusDocument, 'status'> & {
  status: 'ok' | 'degraded';
  workers: WorkerStatus[];
};

/**
 * Merges the workers' documents into the node's (see the file comment). `self`: the
 * asking worker, whose document is the base (another's when it did not answer).
 *
 * @throws NexusError `internal_error` when no worker answered.
 */
export function nodeWideStatus(self: number, gathered: Gathered, now: number): NodeWideStatus {
  const answered = gathered.workers.filter((w) => w.status !== undefined);
  const base = (answered.find((w) => w.id === self) ?? answered[0])?.status;
  if (base === undefined) throw new NexusError('internal_error', 'no worker answered');
  const docs = answered.map((w) => w.status as NodeStatusDocument);
  const workers = [...gathered.workers]
    .sort((a, b) => a.id - b.id)
    .map((w): WorkerStatus => {
      const s = w.status;
      return {
        id: w.id,
        pid: w.pid,
        status: s === undefined ? 'unreachable' : 'ok',
        restarts: w.restarts,
        started_at: s?.node.started_at ?? null,
        uptime_seconds: s?.node.uptime_seconds ?? null,
        policy_hash: s?.node.policy_hash ?? null,
        audit:
          s === undefined
            ? null
            : { pending_records: s.audit.pending_records, lag_seconds: s.audit.lag_seconds },
        approvals_pending: s?.approvals_pending ?? null,
      };
    });
  return {
    ...base,
    status: answered.length === gathered.workers.length ? 'ok' : 'degraded',
    node: {
      ...base.node,
      started_at: new Date(gathered.startedAt).toISOString(),
      uptime_seconds: Math.max(0, Math.floor((now - gathered.startedAt) / 1000)),
    },
    audit: {
      ...base.audit,
      pending_records: docs.reduce((n, d) => n + d.audit.pending_records, 0),
      lag_seconds: Math.max(...docs.map((d) => d.audit.lag_seconds)),
    },
    approvals_pending: docs.reduce((n, d) => n + d.approvals_pending, 0),
    workers,
  };
}
