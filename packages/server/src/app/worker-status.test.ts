/**
 * `GET /v1/status` under `nexus up --workers N` (issue 13): the workers' own documents
 * merged into the node's, and the primary's gathering over the pipes (a worker that does
 * not answer is listed, not waited for forever).
 */
import { describe, expect, it } from 'vitest';
import { NexusError } from '@nexus-proxy/protocol';
import { IpcPeer } from './ipc-peer.js';
import type { NodeStatusDocument } from './status.js';
import { answerStatus, nodeWideStatus, shareWorkerStatus, type Gathered } from './worker-status.js';

const T0 = Date.parse('2026-12-01T00:00:00.000Z');

/** One worker's own document. */
function doc(
  startedAt: number,
  pending: number,
  lag: number,
  approvals: number,
  policy = 'sha256:p',
): NodeStatusDocument {
  return {
    status: 'ok',
    node: {
      proxy_url: 'http://127.0.0.1:7070',
      admin_url: 'http://127.0.0.1:7071',
      started_at: new Date(startedAt).toISOString(),
      uptime_seconds: Math.floor((T0 + 60_000 - startedAt) / 1000),
      store: 'sqlite',
      policy_hash: policy,
    },
    agents: { total: 3, disabled: 1 },
    leases: { active: 5, active_capped: false },
    services: [],
    audit: {
      head_seq: 42,
      pending_records: pending,
      lag_seconds: lag,
      last_checkpoint: null,
    },
    limits: 0,
    approvals_pending: approvals,
  };
}

describe('nodeWideStatus', () => {
  const now = T0 + 60_000;
  const cases: {
    name: string;
    self: number;
    gathered: Gathered;
    expect: Record<string, unknown>;
    workers: { id: number; status: string; restarts: number; pending: number | null }[];
  }[] = [
    {
      name: 'every worker answered: sums, the largest lag, the primary start',
      self: 2,
      gathered: {
        startedAt: T0,
        workers: [
          { id: 2, pid: 202, restarts: 1, status: doc(T0 + 30_000, 4, 0.25, 1, 'sha256:new') },
          { id: 1, pid: 101, restarts: 0, status: doc(T0 + 1000, 3, 0.5, 2) },
        ],
      },
      expect: {
        status: 'ok',
        node: expect.objectContaining({
          started_at: '2026-12-01T00:00:00.000Z',
          uptime_seconds: 60,
          policy_hash: 'sha256:new',
        }),
        audit: { head_seq: 42, pending_records: 7, lag_seconds: 0.5, last_checkpoint: null },
        approvals_pending: 3,
        agents: { total: 3, disabled: 1 },
      },
      workers: [
        { id: 1, status: 'ok', restarts: 0, pending: 3 },
        { id: 2, status: 'ok', restarts: 1, pending: 4 },
      ],
    },
    {
      name: 'a worker did not answer: degraded, listed unreachable, left out of the sums',
      self: 1,
      gathered: {
        startedAt: T0,
        workers: [
          { id: 1, pid: 101, restarts: 0, status: doc(T0, 3, 0.1, 0) },
          { id: 2, pid: null, restarts: 2 },
          { id: 3, pid: 303, restarts: 0, status: doc(T0, 1, 0.2, 0) },
        ],
      },
      expect: {
        status: 'degraded',
        audit: expect.objectContaining({ pending_records: 4, lag_seconds: 0.2 }),
        approvals_pending: 0,
      },
      workers: [
        { id: 1, status: 'ok', restarts: 0, pending: 3 },
        { id: 2, status: 'unreachable', restarts: 2, pending: null },
        { id: 3, status: 'ok', restarts: 0, pending: 1 },
      ],
    },
    {
      name: "the asking worker's own answer missing: another's is the base",
      self: 1,
      gathered: {
        startedAt: T0,
        workers: [
          { id: 1, pid: 101, restarts: 0 },
          { id: 2, pid: 202, restarts: 0, status: doc(T0, 0, 0, 0, 'sha256:two') },
        ],
      },
      expect: { status: 'degraded', node: expect.objectContaining({ policy_hash: 'sha256:two' }) },
      workers: [
        { id: 1, status: 'unreachable', restarts: 0, pending: null },
        { id: 2, status: 'ok', restarts: 0, pending: 0 },
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const s = nodeWideStatus(c.self, c.gathered, now);
      expect(s).toMatchObject(c.expect);
      expect(
        s.workers.map((w) => ({
          id: w.id,
          status: w.status,
          restarts: w.restarts,
          pending: w.audit?.pending_records ?? null,
        })),
      ).toEqual(c.workers);
    });
  }

  it("lists each worker's own start, uptime, pid and policy", () => {
    const s = nodeWideStatus(
      1,
      {
        startedAt: T0,
        workers: [
          { id: 1, pid: 101, restarts: 0, status: doc(T0 + 1000, 0, 0, 0) },
          { id: 2, pid: null, restarts: 1 },
        ],
      },
      T0 + 60_000,
    );
    expect(s.workers).toEqual([
      {
        id: 1,
        pid: 101,
        status: 'ok',
        restarts: 0,
        started_at: '2026-12-01T00:00:01.000Z',
        uptime_seconds: 59,
        policy_hash: 'sha256:p',
        audit: { pending_records: 0, lag_seconds: 0 },
        approvals_pending: 0,
      },
      {
        id: 2,
        pid: null,
        status: 'unreachable',
        restarts: 1,
        started_at: null,
        uptime_seconds: null,
        policy_hash: null,
        audit: null,
        approvals_pending: null,
      },
    ]);
  });

  it('refuses with internal_error when no worker answered', () => {
    const none = () =>
      nodeWideStatus(1, { startedAt: T0, workers: [{ id: 1, pid: 1, restarts: 0 }] }, T0);
    expect(none).toThrow(NexusError);
    try {
      none();
    } catch (e) {
      expect((e as NexusError).code).toBe('internal_error');
    }
  });
});

describe('answerStatus and shareWorkerStatus over the pipes', () => {
  /** A primary's peer and a worker's peer, joined (structured clone, delivered later). */
  function pipe(): { worker: IpcPeer; primary: IpcPeer } {
    const deliver = (to: () => IpcPeer) => (message: unknown) => {
      const copy = structuredClone(message);
      setImmediate(() => to().receive(copy));
    };
    const worker: IpcPeer = new IpcPeer(deliver(() => primary));
    const primary: IpcPeer = new IpcPeer(deliver(() => worker));
    return { worker, primary };
  }

  it("gathers every worker's own status; a worker that never answers is unreachable after 3 s", async () => {
    const one = pipe();
    const two = pipe();
    const three = pipe(); // its worker never answers
    const slots = () => [
      { id: 1, peer: one.primary, pid: 101, restarts: 0 },
      { id: 2, peer: two.primary, pid: 202, restarts: 1 },
      { id: 3, peer: three.primary, pid: 303, restarts: 0 },
      { id: 4, peer: undefined, pid: undefined, restarts: 3 },
    ];
    for (const p of [one, two, three]) answerStatus(p.primary, slots, T0);
    three.worker.handle('status.worker', () => new Promise(() => undefined));
    const ask1 = shareWorkerStatus(
      1,
      async () => doc(T0, 2, 0.1, 0),
      () => T0 + 10_000,
      one.worker,
    );
    shareWorkerStatus(
      2,
      async () => doc(T0, 5, 0.3, 1),
      () => T0 + 10_000,
      two.worker,
    );
    const started = Date.now();
    const s = await ask1();
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(s.status).toBe('degraded');
    expect(s.node.uptime_seconds).toBe(10);
    expect(s.audit.pending_records).toBe(7);
    expect(s.approvals_pending).toBe(1);
    expect(s.workers.map((w) => [w.id, w.pid, w.status, w.restarts])).toEqual([
      [1, 101, 'ok', 0],
      [2, 202, 'ok', 1],
      [3, 303, 'unreachable', 0],
      [4, null, 'unreachable', 3],
    ]);
  });
});
