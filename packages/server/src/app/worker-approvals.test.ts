// Held approvals across the workers of `nexus up --workers N` (issue 13): real queues and
// real IpcPeers joined as the primary-worker pipes join them (structured clone, delivered
// later). Any worker lists every worker's held requests; a decision reaches the holder
// once; refusals and unknown ids answer as one process does; a silent worker is not
// taken for one that holds nothing.
import { describe, expect, it } from 'vitest';
import { isNexusError, safeDetail } from '@nexus-proxy/protocol';
import { ApprovalQueue } from '../approvals/queue.js';
import { localBoard, type ApprovalBoard } from '../approvals/board.js';
import { IpcPeer } from './ipc-peer.js';
import { answerApprovals, workerApprovalBoard } from './worker-approvals.js';

/** A worker's pipe: its side and the primary's; `cut` closes it. */
function pipe(): { worker: IpcPeer; primary: IpcPeer; cut: () => void } {
  let open = true;
  const deliver = (to: () => IpcPeer) => (message: unknown) => {
    if (!open) throw new Error('channel closed');
    const copy = structuredClone(message);
    setImmediate(() => to().receive(copy));
  };
  const worker: IpcPeer = new IpcPeer(deliver(() => primary));
  const primary: IpcPeer = new IpcPeer(deliver(() => worker));
  return { worker, primary, cut: () => (open = false) };
}

/** `n` workers with their queues and boards, and a primary answering for them. */
function group(n: number) {
  let now = 1_000_000;
  const clock = () => (now += 1000);
  const pipes = Array.from({ length: n }, () => pipe());
  const queues = pipes.map(() => new ApprovalQueue({ clock }));
  pipes.forEach((p, i) =>
    answerApprovals(p.primary, () => pipes.filter((_o, j) => j !== i).map((o) => o.primary)),
  );
  const boards = pipes.map((p, i) => workerApprovalBoard(queues[i] as ApprovalQueue, p.worker));
  return { pipes, queues, boards };
}

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
const alice = { name: 'alice', token_id: 'webhook:rule' };
const webhook = {
  url: 'https://hook.example/x',
  secret: 'hook-key',
  timeoutMs: 1000,
  includeBody: false,
};

/** The refusal `p` rejects with: its code and what a client would be told. */
async function refusal(p: Promise<unknown>): Promise<[string, string] | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? [err.code, safeDetail(err)] : ['not-nexus', ''];
  }
}

describe('approvals across workers', () => {
  it("lists every worker's held requests, oldest first, whichever worker is asked", async () => {
    const { queues, boards } = group(3);
    const [q1, q2, q3] = queues as [ApprovalQueue, ApprovalQueue, ApprovalQueue];
    const held = [
      q2.hold(request('/a'), 60_000),
      q1.hold(request('/b'), 60_000),
      q3.hold(request('/c'), 60_000),
      q2.hold(request('/d'), 60_000),
    ];
    for (const board of boards) {
      const listed = await board.list();
      expect(listed.map((v) => v.path)).toEqual(['/a', '/b', '/c', '/d']);
      expect(listed.map((v) => v.id)).toEqual(held.map((h) => h.id));
    }
    for (const q of queues) q.close();
  });

  it('applies a decision once, in the worker that holds it; a second one and an unknown id answer as one process does', async () => {
    const { queues, boards } = group(3);
    const [, q2, q3] = queues as [ApprovalQueue, ApprovalQueue, ApprovalQueue];
    const [b1, b2] = boards as [ApprovalBoard, ApprovalBoard, ApprovalBoard];
    const a = q3.hold(request('/a'), 60_000);
    const b = q2.hold(request('/b'), 60_000);
    expect((await b1.decide(a.id, ops, true, 'ops')).path).toBe('/a');
    expect(await a.outcome).toEqual({ state: 'approved', approver: ops });
    await b2.decide(b.id, ops, false, 'ops');
    expect(await b.outcome).toEqual({ state: 'denied', approver: ops });
    // What one process answers to an id it does not hold (decided, or never held).
    const single = await refusal(
      localBoard(new ApprovalQueue({ clock: () => 0 })).decide('apr_unknown', ops, true, 'ops'),
    );
    expect(single?.[0]).toBe('not_found');
    for (const board of boards) {
      for (const id of [a.id, b.id, 'apr_unknown']) {
        expect(await refusal(board.decide(id, ops, false, 'ops'))).toEqual(single);
      }
    }
    expect(await b1.list()).toEqual([]);
  });

  it("passes the holder's refusal of an operator outside the rule's approvers", async () => {
    const { queues, boards } = group(2);
    const a = (queues[1] as ApprovalQueue).hold(request('/prod', ['release-manager']), 60_000);
    for (const board of boards) {
      expect((await refusal(board.decide(a.id, ops, true, 'ops')))?.[0]).toBe('forbidden');
    }
    await (boards[0] as ApprovalBoard).decide(a.id, ops, true, 'release-manager');
    expect((await a.outcome).state).toBe('approved');
  });

  it("finds a held request's webhook and applies the webhook's decision in the holder", async () => {
    const { queues, boards } = group(2);
    const q2 = queues[1] as ApprovalQueue;
    const [b1, b2] = boards as [ApprovalBoard, ApprovalBoard];
    const a = q2.hold(request('/hooked'), 60_000, webhook);
    const plain = q2.hold(request('/plain'), 60_000);
    expect(await b1.webhookOf(a.id)).toEqual({ secret: webhook.secret, ruleId: 'rule' });
    expect(await b1.webhookOf(plain.id)).toBeUndefined();
    expect(await b1.webhookOf('apr_unknown')).toBeUndefined();
    // A rule without a webhook is not decided by one.
    expect((await refusal(b1.decideByWebhook(plain.id, alice, true)))?.[0]).toBe('not_found');
    await b1.decideByWebhook(a.id, alice, false);
    expect(await a.outcome).toEqual({ state: 'denied', approver: alice });
    expect((await refusal(b2.decideByWebhook(a.id, alice, true)))?.[0]).toBe('not_found');
    expect((await refusal(b1.decideByWebhook(a.id, alice, true)))?.[0]).toBe('not_found');
    q2.close();
  });

  it('a worker that does not answer fails the list and an unfound decision, never a found one', async () => {
    const { pipes, queues, boards } = group(3);
    const b1 = boards[0] as ApprovalBoard;
    const a = (queues[1] as ApprovalQueue).hold(request('/a'), 60_000);
    (queues[2] as ApprovalQueue).hold(request('/b'), 60_000);
    pipes[2]?.cut();
    expect((await refusal(b1.list()))?.[0]).toBe('internal_error');
    // Worker 3 may hold this id: not_found would be a guess.
    expect((await refusal(b1.decide('apr_x', ops, true, 'ops')))?.[0]).toBe('internal_error');
    await b1.decide(a.id, ops, true, 'ops');
    expect((await a.outcome).state).toBe('approved');
    for (const q of queues) q.close();
  });
});
