/**
 * Issue 15: human approval in the request path, end to end. A spawned node with `approve`
 * rules, a recording upstream, the real SDK and `nexus run -- curl` as agents, the real CLI
 * and admin API as the operator. A held request is audited as pending, forwarded exactly
 * as signed once approved, refused on denial and timeout, and never forwarded when its
 * lease is revoked while it waits. Every step is in the audit chain with the approver.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'approval-e2e-deploy-token-0123456789';

interface Pending {
  id: string;
  request_id: string;
  agent: string;
  service: string;
  method: string;
  path: string;
  intent: string;
  rule_id: string;
  approvers?: string[];
}

describe('human approval (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let bot: NexusAgent;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        deploy: { upstream: upstream.url, auth: { type: 'bearer', credential: 'deploy-token' } },
      },
      agents: { bot: { roles: ['deployer'] } },
      policies: [
        { id: 'reads', allow: { roles: ['deployer'], services: ['deploy'], methods: ['GET'] } },
        {
          id: 'releases-need-a-human',
          approve: {
            roles: ['deployer'],
            services: ['deploy'],
            methods: ['POST'],
            paths: ['/releases/**'],
          },
          timeout: '30s',
        },
        {
          id: 'prod-needs-the-release-manager',
          approve: {
            roles: ['deployer'],
            services: ['deploy'],
            methods: ['POST'],
            paths: ['/prod/**'],
          },
          approvers: ['release-manager'],
          timeout: '2s',
        },
      ],
    });
    await node.setCredential('deploy-token', { value: SECRET });
    bot = await node.enroll('bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  /** Waits for exactly one pending approval and returns it (through the real CLI). */
  async function pendingOne(): Promise<Pending> {
    for (let i = 0; i < 250; i++) {
      const r = await node.admin<{ approvals: Pending[] }>('GET', '/v1/approvals');
      if (r.body.approvals.length === 1) return r.body.approvals[0] as Pending;
      await new Promise((res) => setTimeout(res, 40));
    }
    throw new Error('no pending approval');
  }

  async function auditOf(requestId: string) {
    const r = await node.admin<{ records: Record<string, unknown>[] }>(
      'GET',
      `/v1/audit?request_id=${requestId}&order=asc`,
    );
    return r.body.records;
  }

  it('holds the request, lists it, and forwards exactly the signed request once approved', async () => {
    upstream.reset();
    const body = JSON.stringify({ tag: 'v1.2.3', notes: 'ship it' });
    const call = bot.fetch('deploy', '/releases/v1.2.3', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
      intent: 'publish release v1.2.3',
    });
    const pending = await pendingOne();
    expect(pending).toMatchObject({
      agent: 'bot',
      service: 'deploy',
      method: 'POST',
      path: '/releases/v1.2.3',
      intent: 'publish release v1.2.3',
      rule_id: 'releases-need-a-human',
    });
    expect(JSON.stringify(pending)).not.toContain('ship it');
    expect(upstream.requests).toHaveLength(0);

    const listed = await node.cli(['approval', 'list', '--json']);
    expect((JSON.parse(listed.stdout) as Pending[]).map((p) => p.id)).toEqual([pending.id]);
    const metrics = await fetch(`${node.adminUrl}/metrics`, {
      headers: { authorization: `Bearer ${node.operatorToken}` },
    });
    expect(await metrics.text()).toContain('nexus_approvals_pending 1');

    const approved = await node.cli(['approval', 'approve', pending.id, '--json']);
    expect(approved.code).toBe(0);
    expect(JSON.parse(approved.stdout)).toMatchObject({
      state: 'approved',
      approver: { name: 'initial' },
    });
    const res = await call;
    expect(res.status).toBe(200);
    const echoed = (await res.json()) as { body: string; method: string; url: string };
    expect(echoed).toMatchObject({ method: 'POST', url: '/releases/v1.2.3', body });
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);

    // A second decision on the same id finds nothing.
    const again = await node.admin('POST', `/v1/approvals/${pending.id}/deny`);
    expect(again.status).toBe(404);

    const records = await auditOf(pending.request_id);
    expect(
      records.map((r) => [r.kind, (r.approval as { state?: string } | undefined)?.state]),
    ).toEqual([
      ['approval', 'pending'],
      ['approval', 'approved'],
      ['request', undefined],
      ['outcome', undefined],
    ]);
    expect(records[1]?.approval).toMatchObject({
      id: pending.id,
      rule_id: 'releases-need-a-human',
      approver: { name: 'initial', token_id: expect.any(String) },
    });
    expect(records[2]).toMatchObject({ decision: 'allow', rule_ids: ['releases-need-a-human'] });
    expect(JSON.stringify(records)).not.toContain(SECRET);
  });

  it('answers approval_denied when an operator denies, and forwards nothing', async () => {
    upstream.reset();
    const call = codeOf(bot.fetch('deploy', '/releases/bad', { method: 'POST', body: '{}' }));
    const pending = await pendingOne();
    const denied = await node.cli(['approval', 'deny', pending.id]);
    expect(denied.stdout).toBe(`${pending.id} denied by initial\n`);
    expect(await call).toBe('approval_denied');
    expect(upstream.requests).toHaveLength(0);
    const records = await auditOf(pending.request_id);
    expect(records.at(-1)).toMatchObject({
      kind: 'request',
      decision: 'deny',
      error_code: 'approval_denied',
    });
    expect(records[1]?.approval).toMatchObject({ state: 'denied', approver: { name: 'initial' } });
  });

  it('refuses an operator who is not an approver of the rule, then times out', async () => {
    upstream.reset();
    const call = codeOf(bot.fetch('deploy', '/prod/rollout', { method: 'POST', body: '{}' }));
    const pending = await pendingOne();
    expect(pending.approvers).toEqual(['release-manager']);
    const r = await node.admin<{ code: string }>('POST', `/v1/approvals/${pending.id}/approve`);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('forbidden');
    expect(await call).toBe('approval_timeout');
    expect(upstream.requests).toHaveLength(0);
    const records = await auditOf(pending.request_id);
    expect(records[1]?.approval).toMatchObject({ state: 'timeout' });
  });

  it('never forwards a request whose lease was revoked while it waited', async () => {
    upstream.reset();
    const victim = await node.enroll('bot');
    const call = codeOf(victim.fetch('deploy', '/releases/late', { method: 'POST', body: '{}' }));
    const pending = await pendingOne();
    const lease = (pending as Pending & { lease_id: string }).lease_id;
    const revoked = await node.cli(['lease', 'revoke', '--', lease]);
    expect(revoked.code).toBe(0);
    const approved = await node.admin('POST', `/v1/approvals/${pending.id}/approve`);
    expect(approved.status).toBe(200);
    expect(await call).toBe('lease_revoked');
    expect(upstream.requests).toHaveLength(0);
  });

  it('gives the hold up when the agent hangs up, and audits it as abandoned', async () => {
    upstream.reset();
    const abort = new AbortController();
    const call = codeOf(
      bot.fetch('deploy', '/releases/gone', { method: 'POST', body: '{}', signal: abort.signal }),
    );
    const pending = await pendingOne();
    abort.abort();
    await call;
    // The node sees the closed connection, ends the hold and writes its last records.
    let records: Record<string, unknown>[] = [];
    for (let i = 0; i < 250 && records.length < 3; i++) {
      records = await auditOf(pending.request_id);
      if (records.length < 3) await new Promise((res) => setTimeout(res, 40));
    }
    expect(records[1]?.approval).toMatchObject({ state: 'abandoned' });
    expect(records.at(-1)).toMatchObject({ kind: 'request', error_code: 'agent_disconnected' });
    expect((await node.admin('POST', `/v1/approvals/${pending.id}/approve`)).status).toBe(404);
    expect(upstream.requests).toHaveLength(0);
  });

  it('works for an agent behind the nexus run sidecar (curl waits for the decision)', async () => {
    upstream.reset();
    const run = node.runAgent(
      'bot',
      [
        'sh',
        '-c',
        'curl -s -X POST -H "content-type: application/json" -d \'{"v":2}\' "$NEXUS_PROXY/deploy/releases/v2"',
      ],
      { args: ['--agent', 'bot', '--intent', 'release v2 from a script'] },
    );
    const pending = await pendingOne();
    expect(pending.intent).toBe('release v2 from a script');
    await node.cli(['approval', 'approve', pending.id]);
    const r = await run;
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'POST', body: '{"v":2}' });
    expect(upstream.requests).toHaveLength(1);
  });

  // Last: it stops the node.
  it('ends held requests with approval_timeout when the node stops, and audits them', async () => {
    upstream.reset();
    const call = codeOf(
      bot.fetch('deploy', '/releases/at-shutdown', { method: 'POST', body: '{}' }),
    );
    const pending = await pendingOne();
    expect(await node.stop()).toBe(0);
    expect(await call).toBe('approval_timeout');
    expect(upstream.requests).toHaveLength(0);
    await node.restart();
    const records = await auditOf(pending.request_id);
    expect(records[1]?.approval).toMatchObject({ state: 'stopped' });
    expect(records.at(-1)).toMatchObject({ kind: 'request', error_code: 'approval_timeout' });
    // Nothing is held after the restart.
    expect(
      (await node.admin<{ approvals: Pending[] }>('GET', '/v1/approvals')).body.approvals,
    ).toEqual([]);
  });
});
