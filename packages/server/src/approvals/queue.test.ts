// The approval queue: decisions, approvers, timeout, abandon, stop, and the caps that keep
// one agent from filling the node with held requests (issue 15).
import { describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import { ApprovalQueue } from './queue.js';

const request = (agent = 'bot', approvers?: string[]) => ({
  request_id: 'r1',
  agent,
  lease_id: 'l1',
  service: 'gh',
  method: 'POST',
  path: '/x',
  intent: 'i',
  rule_id: 'rule',
  ...(approvers === undefined ? {} : { approvers }),
});
const ops = { name: 'ops', token_id: 't1' };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

describe('ApprovalQueue', () => {
  it('approves and denies once; a second decision is not_found', async () => {
    const q = new ApprovalQueue({ clock: () => 0 });
    const a = q.hold(request(), 60_000);
    const b = q.hold(request(), 60_000);
    expect(q.list().map((v) => v.id)).toEqual([a.id, b.id]);
    q.decide(a.id, ops, true, ops.name);
    q.decide(b.id, ops, false, ops.name);
    expect(await a.outcome).toEqual({ state: 'approved', approver: ops });
    expect(await b.outcome).toEqual({ state: 'denied', approver: ops });
    expect(codeOf(() => q.decide(a.id, ops, false, ops.name))).toBe('not_found');
    expect(q.list()).toEqual([]);
  });

  it("refuses an operator outside the rule's approvers", () => {
    const q = new ApprovalQueue({ clock: () => 0 });
    const a = q.hold(request('bot', ['release-manager']), 60_000);
    expect(codeOf(() => q.decide(a.id, ops, true, ops.name))).toBe('forbidden');
    q.decide(a.id, { name: 'release-manager', token_id: 't2' }, true, 'release-manager');
  });

  it('times out, is abandoned, and ends on close', async () => {
    const q = new ApprovalQueue({ clock: () => 0 });
    const t = q.hold(request(), 10);
    expect((await t.outcome).state).toBe('timeout');
    const a = q.hold(request(), 60_000);
    const s = q.hold(request(), 60_000);
    a.abandon();
    q.close();
    expect((await a.outcome).state).toBe('abandoned');
    expect((await s.outcome).state).toBe('stopped');
  });

  it('caps held requests per agent and in all', () => {
    const q = new ApprovalQueue({ clock: () => 0, maxPending: 3, maxPendingPerAgent: 2 });
    q.hold(request('a'), 60_000);
    q.hold(request('a'), 60_000);
    expect(codeOf(() => q.hold(request('a'), 60_000))).toBe('rate_limited');
    q.hold(request('b'), 60_000);
    expect(codeOf(() => q.hold(request('c'), 60_000))).toBe('rate_limited');
    q.close();
  });
});
