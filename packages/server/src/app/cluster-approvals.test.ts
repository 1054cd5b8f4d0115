// Held approvals shared by a cluster's nodes (issue 13), two nodes' queues on one real
// store (SQLite in memory; the PostgreSQL store runs the same queries, and the e2e test
// test/cluster-approvals.e2e.test.ts runs real nodes on it): every node lists and decides,
// the holder applies a decision once, and a decision written first wins over the
// holder's own end (timeout, stop) that races it.
import { afterEach, describe, expect, it } from 'vitest';
import { ApprovalQueue } from '../approvals/queue.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { createLogger } from '../util/logger.js';
import { ClusterApprovals } from './cluster-approvals.js';

const request = (path: string, approvers?: string[]) => ({
  request_id: `r-${path}`,
  agent: 'bot',
  lease_id: 'l1',
  service: 'gh',
  method: 'POST',
  path,
  intent: 'i',
  rule_id: 'rule',
  ...(approvers === undefined ? {} : { approvers }),
});
const ops = { name: 'ops', token_id: 't1' };

let store: Store | undefined;
const nodes: ClusterApprovals[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  await store?.close();
});

/** Two nodes on one store; notices go straight to the named node (the channel's job). */
function twoNodes(options: { deliver?: boolean } = {}) {
  store = openSqliteStore(':memory:');
  const notices: string[] = [];
  const byId = new Map<string, ClusterApprovals>();
  const make = (nodeId: string) => {
    const cluster = new ClusterApprovals({
      store: store as Store,
      nodeId,
      clock: Date.now,
      logger: createLogger('error'),
      notify: async (node) => {
        notices.push(node);
        if (options.deliver !== false) byId.get(node)?.noticed(node);
      },
      // The poll would hide a lost notice: slow here, so the notice is what is tested.
      pollMs: 60_000,
    });
    byId.set(nodeId, cluster);
    nodes.push(cluster);
    const queue = new ApprovalQueue({ clock: Date.now, sharing: cluster });
    return { cluster, queue, board: cluster.board(queue) };
  };
  return { n1: make('n1'), n2: make('n2'), notices };
}

/** The code of the error a promise rejects with ('rejected' without one), else undefined. */
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: { code?: string }) => err.code ?? 'rejected',
  );

describe('ClusterApprovals', () => {
  it('lists every node held requests on any node; a decision on another node is applied once by the holder', async () => {
    const { n1, n2, notices } = twoNodes();
    const a = n1.queue.hold(request('/a'), 60_000);
    await n1.queue.share(a.id);
    // The list is oldest first, and ties (the same millisecond) go by random id: b is held
    // strictly later.
    await new Promise((r) => setTimeout(r, 5));
    const b = n2.queue.hold(request('/b'), 60_000);
    await n2.queue.share(b.id);
    for (const board of [n1.board, n2.board]) {
      expect((await board.list()).map((v) => v.path)).toEqual(['/a', '/b']);
    }
    const view = await n2.board.decide(a.id, ops, true, ops.name);
    expect(view.id).toBe(a.id);
    expect(notices).toEqual(['n1']);
    expect(await a.outcome).toEqual({ state: 'approved', approver: ops });
    expect(await codeOf(n1.board.decide(a.id, ops, false, ops.name))).toBe('not_found');
    expect(await codeOf(n2.board.decide('apr_none', ops, true, ops.name))).toBe('not_found');
    // The holder decides its own through the store too, at once.
    await n2.board.decide(b.id, ops, false, ops.name);
    expect(await b.outcome).toEqual({ state: 'denied', approver: ops });
    expect(notices).toEqual(['n1']);
    expect(await n1.board.list()).toEqual([]);
  });

  it("checks the rule's approvers and webhook on any node", async () => {
    const { n1, n2 } = twoNodes();
    const a = n1.queue.hold(request('/a', ['release-manager']), 60_000);
    await n1.queue.share(a.id);
    expect(await codeOf(n2.board.decide(a.id, ops, true, 'ops'))).toBe('forbidden');
    expect(await codeOf(n2.board.decide(a.id, ops, true, undefined))).toBe('forbidden');
    expect(await n2.board.webhookOf(a.id)).toBeUndefined();
    expect(await codeOf(n2.board.decideByWebhook(a.id, ops, true))).toBe('not_found');
    const hooked = n1.queue.hold(request('/h'), 60_000, {
      url: 'https://hooks.example/x',
      secret: 'hook-key',
      timeoutMs: 1000,
      includeBody: false,
    });
    await n1.queue.share(hooked.id);
    expect(await n2.board.webhookOf(hooked.id)).toEqual({ secret: 'hook-key', ruleId: 'rule' });
    await n2.board.decideByWebhook(hooked.id, { name: 'alice', token_id: 'webhook:rule' }, true);
    expect(await hooked.outcome).toMatchObject({ state: 'approved' });
    await n2.board.decide(a.id, ops, false, 'release-manager');
    expect(await a.outcome).toMatchObject({ state: 'denied' });
  });

  it('a decision written before the holder times out or stops holds; without one the own end holds', async () => {
    // Notices lost: the holder has not taken the decisions when its own ends come.
    const { n1, n2 } = twoNodes({ deliver: false });
    const timed = n1.queue.hold(request('/t'), 300);
    const stopped = n1.queue.hold(request('/s'), 60_000);
    const plain = n1.queue.hold(request('/p'), 60_000);
    for (const h of [timed, stopped, plain]) await n1.queue.share(h.id);
    await n2.board.decide(timed.id, ops, true, ops.name);
    await n2.board.decide(stopped.id, ops, false, ops.name);
    expect(await timed.outcome).toEqual({ state: 'approved', approver: ops });
    n1.queue.close();
    expect(await stopped.outcome).toEqual({ state: 'denied', approver: ops });
    expect(await plain.outcome).toEqual({ state: 'stopped' });
    expect(await n2.board.list()).toEqual([]);
    expect(await codeOf(n2.board.decide(plain.id, ops, true, ops.name))).toBe('not_found');
  });

  it('fails closed with the store closed: not shared, nothing decided', async () => {
    const { n1, n2 } = twoNodes();
    const a = n1.queue.hold(request('/a'), 60_000);
    await n1.queue.share(a.id);
    await store?.close();
    expect(await codeOf(n2.board.list())).toBeDefined();
    expect(await codeOf(n2.board.decide(a.id, ops, true, ops.name))).toBeDefined();
    const b = n1.queue.hold(request('/b'), 60_000);
    await expect(n1.queue.share(b.id)).rejects.toBeDefined();
    // The holder's own end without a store: its own reason, never approved.
    a.abandon();
    expect(await a.outcome).toEqual({ state: 'abandoned' });
  });
});
