/**
 * Issue 15: webhook approvers, end to end. A spawned node whose `approve` rules name a real
 * loopback webhook server; the real SDK as the agent. The webhook gets a signed description
 * of each held request (HMAC-SHA256 over timestamp and body, key from the vault, no body
 * content, no credential) and decides at once or through the signed callback on the admin
 * API; a callback with a bad signature is refused; a webhook that is down leaves the
 * request held until `approval_timeout`. The webhook's approver is in the audit chain.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from './helpers/agents.js';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const HOOK_KEY = 'webhook-hmac-key-for-the-e2e-test-0123456789';
const SECRET = 'webhook-e2e-upstream-token-abcdef0123456789';

interface Delivery {
  headers: IncomingMessage['headers'];
  body: string;
  doc: {
    type: string;
    callback_url?: string;
    approval: { id: string; path: string; rule_id: string; agent: string; intent: string };
  };
}

const sign = (timestamp: string, body: string, key = HOOK_KEY) =>
  `sha256=${createHmac('sha256', key).update(`${timestamp}.${body}`).digest('hex')}`;

describe('webhook approvers (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let bot: NexusAgent;
  let hook: Server;
  const deliveries: Delivery[] = [];
  /** What the webhook answers, by the held request's path prefix. */
  const answer = (path: string, res: ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    if (path.startsWith('/sync-approve') || path.startsWith('/with-body')) {
      res.end(JSON.stringify({ decision: 'approve', approver: 'alice' }));
    } else if (path.startsWith('/sync-deny')) {
      res.end(JSON.stringify({ decision: 'deny', approver: 'bob' }));
    } else {
      res.statusCode = 202; // decided later, through the callback
      res.end('{}');
    }
  };

  beforeAll(async () => {
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const doc = JSON.parse(body) as Delivery['doc'];
        deliveries.push({ headers: req.headers, body, doc });
        answer(doc.approval.path, res);
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    const downUrl = `http://127.0.0.1:${await freePort()}/hook`; // nothing listens there
    upstream = await startUpstream();
    const webhook = { url: hookUrl, secret: 'approval-hook-key', timeout: '5s' };
    node = await startNode({
      services: {
        deploy: { upstream: upstream.url, auth: { type: 'bearer', credential: 'deploy-token' } },
      },
      agents: { bot: { roles: ['deployer'] } },
      policies: [
        {
          id: 'hooked',
          approve: {
            roles: ['deployer'],
            paths: ['/sync-approve/**', '/sync-deny/**', '/later/**'],
          },
          webhook,
          timeout: '30s',
        },
        {
          id: 'hooked-with-body',
          approve: { roles: ['deployer'], paths: ['/with-body/**'] },
          webhook: { ...webhook, include_body: true },
          timeout: '30s',
        },
        {
          id: 'hook-down',
          approve: { roles: ['deployer'], paths: ['/down/**'] },
          webhook: { ...webhook, url: downUrl },
          timeout: '2s',
        },
      ],
    });
    await node.setCredential('deploy-token', { value: SECRET });
    await node.setCredential('approval-hook-key', { value: HOOK_KEY });
    bot = await node.enroll('bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
    await new Promise<void>((r) => {
      hook?.closeAllConnections();
      hook?.close(() => r());
    });
  });

  /** The request's audit records, once there are `count` (the outcome is appended last). */
  async function auditOf(requestId: string, count = 4) {
    for (let i = 0; ; i++) {
      const r = await node.admin<{ records: Record<string, unknown>[] }>(
        'GET',
        `/v1/audit?request_id=${requestId}&order=asc`,
      );
      if (r.body.records.length >= count || i === 100) return r.body.records;
      await new Promise((res) => setTimeout(res, 30));
    }
  }

  async function deliveryFor(path: string): Promise<Delivery> {
    for (let i = 0; i < 250; i++) {
      const d = deliveries.find((x) => x.doc.approval.path === path);
      if (d !== undefined) return d;
      await new Promise((r) => setTimeout(r, 40));
    }
    throw new Error(`no webhook delivery for ${path}`);
  }

  it('signs a description without body or credential, and a synchronous approve forwards', async () => {
    upstream.reset();
    const res = await bot.fetch('deploy', '/sync-approve/1', {
      method: 'POST',
      body: JSON.stringify({ notes: 'confidential release notes' }),
      headers: { 'content-type': 'application/json' },
      intent: 'ship 1',
    });
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(1);
    const d = await deliveryFor('/sync-approve/1');
    const ts = d.headers['nexus-webhook-timestamp'] as string;
    expect(d.headers['nexus-webhook-signature']).toBe(sign(ts, d.body));
    expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(300);
    expect(d.doc).toMatchObject({
      type: 'approval.pending',
      approval: { agent: 'bot', rule_id: 'hooked', intent: 'ship 1' },
    });
    expect(d.doc.callback_url).toBe(`${node.adminUrl}/v1/approvals/${d.doc.approval.id}/webhook`);
    expect(d.body).not.toContain('confidential');
    expect(d.body).not.toContain(SECRET);
    expect(d.body).not.toContain(HOOK_KEY);

    const records = await auditOf(res.headers.get('nexus-request-id') as string);
    expect(
      records.map((r) => [r.kind, (r.approval as { state?: string } | undefined)?.state]),
    ).toEqual([
      ['approval', 'pending'],
      ['approval', 'approved'],
      ['request', undefined],
      ['outcome', undefined],
    ]);
    expect(records[1]?.approval).toMatchObject({
      approver: { name: 'alice', token_id: 'webhook:hooked' },
    });
  });

  it('sends the body only to a webhook with include_body, as base64 with its type', async () => {
    const body = JSON.stringify({ change: 'rotate the prod database' });
    const res = await bot.fetch('deploy', '/with-body/1', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(200);
    const d = await deliveryFor('/with-body/1');
    const described = (d.doc as unknown as { body: Record<string, unknown> }).body;
    expect(described).toEqual({
      bytes: body.length,
      content_type: 'application/json',
      base64: Buffer.from(body).toString('base64'),
    });
    expect(d.body).not.toContain(SECRET);
    expect((await deliveryFor('/sync-approve/1')).body).not.toContain('"body"');
  });

  it('a synchronous deny answers approval_denied and forwards nothing', async () => {
    upstream.reset();
    expect(await codeOf(bot.fetch('deploy', '/sync-deny/1', { method: 'POST', body: 'x' }))).toBe(
      'approval_denied',
    );
    expect(upstream.requests).toHaveLength(0);
  });

  it('takes the decision through the signed callback, and refuses a bad or misdirected one', async () => {
    upstream.reset();
    const call = bot.fetch('deploy', '/later/1', { method: 'POST', body: 'x', intent: 'later' });
    const d = await deliveryFor('/later/1');
    const id = d.doc.approval.id;
    const url = `${node.adminUrl}/v1/approvals/${id}/webhook`;
    const post = (body: string, headers: Record<string, string>) =>
      fetch(url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', ...headers },
      });
    const body = JSON.stringify({ id, decision: 'approve', approver: 'carol' });
    const ts = String(Math.floor(Date.now() / 1000));

    const forged = await post(body, {
      'nexus-webhook-timestamp': ts,
      'nexus-webhook-signature': sign(ts, body, 'not-the-key-0123456789abcdef'),
    });
    expect(forged.status).toBe(401);
    expect(((await forged.json()) as { code: string }).code).toBe('unauthorized');
    const unsigned = await post(body, {});
    expect(unsigned.status).toBe(401);
    const stale = String(Math.floor(Date.now() / 1000) - 3600);
    const old = await post(body, {
      'nexus-webhook-timestamp': stale,
      'nexus-webhook-signature': sign(stale, body),
    });
    expect(old.status).toBe(401);
    // Validly signed, but naming another approval: not this one's decision.
    const other = JSON.stringify({ id: 'apr_other', decision: 'approve', approver: 'carol' });
    const misdirected = await post(other, {
      'nexus-webhook-timestamp': ts,
      'nexus-webhook-signature': sign(ts, other),
    });
    expect(misdirected.status).toBe(400);
    // Still held after all of that.
    const listed = await node.admin<{ approvals: { id: string }[] }>('GET', '/v1/approvals');
    expect(listed.body.approvals.map((a) => a.id)).toEqual([id]);
    expect(upstream.requests).toHaveLength(0);

    const ok = await post(body, {
      'nexus-webhook-timestamp': ts,
      'nexus-webhook-signature': sign(ts, body),
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({
      state: 'approved',
      approver: { name: 'carol', token_id: 'webhook:hooked' },
    });
    const res = await call;
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(1);
    const records = await auditOf(res.headers.get('nexus-request-id') as string);
    expect(records[1]?.approval).toMatchObject({
      state: 'approved',
      approver: { name: 'carol', token_id: 'webhook:hooked' },
    });
    // A replay of the same signed callback finds nothing left to decide.
    const again = await post(body, {
      'nexus-webhook-timestamp': ts,
      'nexus-webhook-signature': sign(ts, body),
    });
    expect(again.status).toBe(404);
  });

  it('keeps the request held while the webhook is down, until approval_timeout', async () => {
    upstream.reset();
    const call = codeOf(bot.fetch('deploy', '/down/1', { method: 'POST', body: 'x' }));
    let held = 0;
    for (let i = 0; i < 50 && held === 0; i++) {
      const r = await node.admin<{ approvals: { rule_id: string }[] }>('GET', '/v1/approvals');
      held = r.body.approvals.filter((a) => a.rule_id === 'hook-down').length;
      if (held === 0) await new Promise((r2) => setTimeout(r2, 40));
    }
    expect(held).toBe(1);
    expect(await call).toBe('approval_timeout');
    expect(upstream.requests).toHaveLength(0);
    expect(node.output()).toContain('approval webhook failed');
  });
});
