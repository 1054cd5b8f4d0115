/**
 * Issue 13: `nexus up --workers 2` on a SQLite file with `approve` rules: the workers act
 * as one node for held requests. Real processes, a recording upstream, a real webhook
 * server; every call on a connection of its own, so the primary hands them out to both
 * workers in turn. Requests held by both workers are listed whichever worker answers;
 * decisions (operator or webhook callback) reach the worker that holds the request and
 * are applied once; a second decision and an unknown id are `not_found`, a refused
 * approver `forbidden`, as on one process; `nexus_approvals_pending` and `nexus status`
 * count every worker's; a worker that stops or is killed ends its held requests and their
 * ids answer `not_found`. The audit chain has every decision.
 */
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const HOOK_KEY = 'workers-approvals-webhook-key-0123456789';

interface Answer {
  status: number;
  code: string | undefined;
  body: string;
}

interface Pending {
  id: string;
  request_id: string;
  path: string;
  rule_id: string;
  created_at: string;
}

/** One HTTP exchange on a connection of its own; a broken connection is status 0. */
function exchange(
  url: string,
  options: { method: string; headers?: Record<string, string>; body?: string },
): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: options.method,
        headers: options.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          let code: string | undefined;
          if ((res.headers['content-type'] ?? '').includes('problem+json')) {
            code = (JSON.parse(body) as { code?: string }).code;
          }
          resolve({ status: res.statusCode ?? 0, code, body });
        });
        res.on('error', () => resolve({ status: 0, code: undefined, body: '' }));
      },
    );
    req.on('error', () => resolve({ status: 0, code: undefined, body: '' }));
    req.end(options.body);
  });
}

/** A signed POST from `agent` (held by an approve rule), on a connection of its own. */
async function post(node: TestNode, agent: RawAgent, path: string): Promise<Answer> {
  const url = `${node.proxyUrl}${path}`;
  const body = JSON.stringify({ path });
  const headers = await signRequest({
    method: 'POST',
    url,
    lease: agent.lease,
    key: agent.key,
    intent: `ship ${path}`,
    headers: { 'content-type': 'application/json' },
    body,
  });
  return exchange(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

/** An admin API call with the operator token, on a connection of its own. */
async function admin<T>(node: TestNode, method: string, path: string) {
  const r = await exchange(`${node.adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${node.operatorToken}` },
  });
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined; // /metrics is text
  }
  return { ...r, json: json as T };
}

const list = async (node: TestNode) =>
  (await admin<{ approvals: Pending[] }>(node, 'GET', '/v1/approvals')).json.approvals;

/** Waits until the list (asked of either worker) shows exactly `count` held requests. */
async function listed(node: TestNode, count: number): Promise<Pending[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const approvals = await list(node);
    if (approvals.length === count) return approvals;
    if (Date.now() > deadline) throw new Error(`${approvals.length} held, not ${count}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The access-log lines of the workers for `prefix`: which worker answered each path. */
function servedBy(node: TestNode, prefix: string): Map<string, number> {
  const served = new Map<string, number>();
  for (const line of node.output().split('\n')) {
    if (!line.includes('"access"')) continue;
    try {
      const j = JSON.parse(line) as { worker?: number; access?: { path: string } };
      if (j.worker !== undefined && j.access?.path.startsWith(prefix) === true) {
        served.set(j.access.path, j.worker);
      }
    } catch {
      // not a log line
    }
  }
  return served;
}

/** Polls until `check` passes (records and log lines are written just after the answer). */
async function eventually(check: () => Promise<void> | void, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe('nexus up --workers 2: approvals (issue 13)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let hook: Server;
  /** The webhook's deliveries: the approval ids it was told of. */
  const told: string[] = [];

  beforeAll(async () => {
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          approval: { id: string };
        };
        told.push(doc.approval.id);
        // Decided later, through the callback.
        res.statusCode = 202;
        res.end('{}');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    upstream = await startUpstream();
    node = await startNode({
      services: { deploy: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['deployer'] } },
      policies: [
        {
          id: 'releases-need-a-human',
          approve: { roles: ['deployer'], methods: ['POST'], paths: ['/releases/**'] },
          timeout: '60s',
        },
        {
          id: 'prod-needs-the-release-manager',
          approve: { roles: ['deployer'], methods: ['POST'], paths: ['/prod/**'] },
          approvers: ['release-manager'],
          timeout: '8s',
        },
        {
          id: 'hooked',
          approve: { roles: ['deployer'], methods: ['POST'], paths: ['/later/**'] },
          webhook: {
            url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
            secret: 'approval-hook-key',
          },
          timeout: '60s',
        },
      ],
      overrides: { log: { level: 'info', access: true } },
      upArgs: ['--workers', '2'],
    });
    await node.setCredential('approval-hook-key', { value: HOOK_KEY });
  }, 60_000);

  afterAll(async () => {
    await node?.stop().catch(() => undefined);
    await upstream?.close();
    await new Promise<void>((r) => {
      hook?.closeAllConnections();
      hook?.close(() => r());
    });
  });

  async function auditOf(requestId: string, count: number) {
    let records: Record<string, unknown>[] = [];
    await eventually(async () => {
      const r = await node.admin<{ records: Record<string, unknown>[] }>(
        'GET',
        `/v1/audit?request_id=${requestId}&order=asc`,
      );
      records = r.body.records;
      expect(records.length).toBeGreaterThanOrEqual(count);
    });
    return records;
  }

  it('lists every held request whichever worker answers; approvals and denials through either worker are applied once', async () => {
    upstream.reset();
    const agent = await rawAgent(node, 'bot');
    const paths = Array.from({ length: 8 }, (_x, i) => `/deploy/releases/r-${i}`);
    const calls = paths.map((p) => post(node, agent, p));
    const held = await listed(node, 8);
    const ids = held.map((p) => p.id).sort();
    expect(new Set(ids).size).toBe(8);
    // Oldest first, and the same whole list from either worker, asked again and again.
    expect(held.map((p) => p.created_at)).toEqual(held.map((p) => p.created_at).sort());
    for (let i = 0; i < 8; i++) {
      expect((await list(node)).map((p) => p.id).sort()).toEqual(ids);
    }
    // The CLI (a process of its own, a connection of its own) sees them all too.
    const cli = await node.cli(['approval', 'list', '--json']);
    expect((JSON.parse(cli.stdout) as Pending[]).map((p) => p.id).sort()).toEqual(ids);
    // The gauge is each worker's own count, summed by the /metrics aggregation; status
    // counts every worker's.
    for (let i = 0; i < 4; i++) {
      const metrics = await admin<never>(node, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^nexus_approvals_pending 8$/m);
      const status = await admin<{ approvals_pending: number }>(node, 'GET', '/v1/status');
      expect(status.json.approvals_pending).toBe(8);
    }

    const byPath = new Map(held.map((p) => [`/deploy${p.path}`, p]));
    const approve = (i: number) => i % 2 === 0;
    for (const [i, path] of paths.entries()) {
      const pending = byPath.get(path) as Pending;
      const verb = approve(i) ? 'approve' : 'deny';
      const r = await admin<{ state: string; approval: Pending; approver: { name: string } }>(
        node,
        'POST',
        `/v1/approvals/${pending.id}/${verb}`,
      );
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        state: approve(i) ? 'approved' : 'denied',
        approval: { id: pending.id, request_id: pending.request_id },
        approver: { name: 'initial' },
      });
    }
    // A second decision, on either worker (two tries each), finds nothing, as on one
    // process; so does an id nobody held.
    for (const pending of held) {
      for (const verb of ['approve', 'deny']) {
        const again = await admin(node, 'POST', `/v1/approvals/${pending.id}/${verb}`);
        expect([again.status, again.code]).toEqual([404, 'not_found']);
      }
    }
    for (let i = 0; i < 2; i++) {
      const unknown = await admin(node, 'POST', '/v1/approvals/apr_nobodyheldthis/approve');
      expect([unknown.status, unknown.code]).toEqual([404, 'not_found']);
    }

    const answers = await Promise.all(calls);
    for (const [i, answer] of answers.entries()) {
      const path = paths[i] as string;
      if (approve(i)) {
        expect(answer.status).toBe(200);
        expect(JSON.parse(answer.body)).toMatchObject({
          method: 'POST',
          url: path.slice('/deploy'.length),
          body: JSON.stringify({ path }),
        });
      } else {
        expect([answer.status, answer.code]).toEqual([403, 'approval_denied']);
      }
    }
    for (const [i, path] of paths.entries()) {
      const url = path.slice('/deploy'.length);
      expect(upstream.requests.filter((r) => r.url === url)).toHaveLength(approve(i) ? 1 : 0);
    }
    expect(await list(node)).toEqual([]);
    // Both workers held some of them (each request is logged by the worker that held it).
    await eventually(() => expect(servedBy(node, '/releases/r-').size).toBe(8));
    expect(new Set(servedBy(node, '/releases/r-').values())).toEqual(new Set([1, 2]));

    for (const [i, path] of paths.entries()) {
      const pending = byPath.get(path) as Pending;
      const records = await auditOf(pending.request_id, approve(i) ? 4 : 3);
      expect(
        records.map((r) => [r.kind, (r.approval as { state?: string } | undefined)?.state]),
      ).toEqual([
        ['approval', 'pending'],
        ['approval', approve(i) ? 'approved' : 'denied'],
        ['request', undefined],
        ...(approve(i) ? [['outcome', undefined]] : []),
      ]);
      expect(records[1]?.approval).toMatchObject({
        id: pending.id,
        rule_id: 'releases-need-a-human',
        approver: { name: 'initial', token_id: expect.any(String) },
      });
      expect(records[2]).toMatchObject(
        approve(i) ? { decision: 'allow' } : { decision: 'deny', error_code: 'approval_denied' },
      );
    }
  }, 60_000);

  it("refuses an operator outside the rule's approvers whichever worker is asked, and the holds time out", async () => {
    upstream.reset();
    const agent = await rawAgent(node, 'bot');
    const calls = [0, 1, 2, 3].map((i) => post(node, agent, `/deploy/prod/p-${i}`));
    const held = await listed(node, 4);
    for (const pending of held) {
      for (let i = 0; i < 2; i++) {
        const r = await admin(node, 'POST', `/v1/approvals/${pending.id}/approve`);
        expect([r.status, r.code]).toEqual([403, 'forbidden']);
      }
    }
    for (const answer of await Promise.all(calls)) {
      expect([answer.status, answer.code]).toEqual([408, 'approval_timeout']);
    }
    expect(upstream.requests).toHaveLength(0);
    const records = await auditOf(held[0]?.request_id as string, 3);
    expect(records[1]?.approval).toMatchObject({ state: 'timeout' });
  }, 60_000);

  it("a webhook's signed callback reaches the worker that holds the request, once", async () => {
    upstream.reset();
    const agent = await rawAgent(node, 'bot');
    const paths = [0, 1, 2, 3].map((i) => `/deploy/later/w-${i}`);
    const calls = paths.map((p) => post(node, agent, p));
    const held = await listed(node, 4);
    // Each held request was described once, by the worker that holds it.
    await eventually(() => expect([...told].sort()).toEqual(held.map((p) => p.id).sort()));
    const callback = (id: string, decision: string) => {
      const body = JSON.stringify({ id, decision, approver: 'alice' });
      const timestamp = String(Math.floor(Date.now() / 1000));
      const signature = `sha256=${createHmac('sha256', HOOK_KEY).update(`${timestamp}.${body}`).digest('hex')}`;
      return exchange(`${node.adminUrl}/v1/approvals/${id}/webhook`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'nexus-webhook-timestamp': timestamp,
          'nexus-webhook-signature': signature,
        },
        body,
      });
    };
    const byPath = new Map(held.map((p) => [`/deploy${p.path}`, p]));
    for (const [i, path] of paths.entries()) {
      const id = (byPath.get(path) as Pending).id;
      const r = await callback(id, i < 2 ? 'approve' : 'deny');
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({
        state: i < 2 ? 'approved' : 'denied',
        approver: { name: 'alice', token_id: 'webhook:hooked' },
      });
      // A replayed callback (to either worker) finds nothing to decide.
      for (let k = 0; k < 2; k++) {
        const again = await callback(id, 'approve');
        expect([again.status, again.code]).toEqual([404, 'not_found']);
      }
    }
    const answers = await Promise.all(calls);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 403, 403]);
    expect(answers.slice(2).map((a) => a.code)).toEqual(['approval_denied', 'approval_denied']);
    expect(upstream.requests.map((r) => r.url).sort()).toEqual(['/later/w-0', '/later/w-1']);
    const records = await auditOf((byPath.get(paths[0] as string) as Pending).request_id, 4);
    expect(records[1]?.approval).toMatchObject({
      state: 'approved',
      approver: { name: 'alice', token_id: 'webhook:hooked' },
    });
  }, 60_000);

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`${signal} to a worker ends its held requests; their ids answer not_found, the other worker's stay held`, async () => {
      upstream.reset();
      const agent = await rawAgent(node, 'bot');
      const paths = Array.from({ length: 6 }, (_x, i) => `/deploy/releases/${signal}-${i}`);
      let settled = 0;
      const calls = paths.map((p) =>
        post(node, agent, p).then((a) => {
          settled++;
          return a;
        }),
      );
      const held = await listed(node, 6);
      const workers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(node.process.pid)], {
        encoding: 'utf8',
      })
        .split('\n')
        .map((l) => Number(l.trim()))
        .filter((pid) => pid > 0);
      expect(workers).toHaveLength(2);
      const restarts = node.output().split('listening again').length;
      process.kill(workers[0] as number, signal);
      // The victim's agents get their answer (SIGTERM: the node's stop answer) or a
      // broken connection (SIGKILL); the other worker's agents wait on.
      await eventually(() => expect(settled).toBeGreaterThan(0));
      // A worker's start may take tens of seconds on a loaded machine.
      await eventually(
        () => expect(node.output().split('listening again').length).toBe(restarts + 1),
        60_000,
      );
      const ended = new Set<string>();
      for (const [i, p] of paths.entries()) {
        const done = await Promise.race([calls[i], new Promise((r) => setTimeout(r, 10, 'held'))]);
        if (done !== 'held') ended.add(p);
      }
      const byPath = new Map(held.map((p) => [`/deploy${p.path}`, p]));
      expect(ended.size).toBeGreaterThan(0);
      expect(ended.size).toBeLessThan(6);
      const still = held.filter((p) => !ended.has(`/deploy${p.path}`));
      for (let i = 0; i < 4; i++) {
        expect((await list(node)).map((p) => p.id).sort()).toEqual(still.map((p) => p.id).sort());
      }
      for (const p of ended) {
        const pending = byPath.get(p) as Pending;
        const r = await admin(node, 'POST', `/v1/approvals/${pending.id}/approve`);
        expect([r.status, r.code]).toEqual([404, 'not_found']);
      }
      for (const pending of still) {
        expect((await admin(node, 'POST', `/v1/approvals/${pending.id}/approve`)).status).toBe(200);
      }
      const answers = await Promise.all(calls);
      for (const [i, p] of paths.entries()) {
        const answer = answers[i] as Answer;
        if (!ended.has(p)) expect(answer.status).toBe(200);
        else if (signal === 'SIGTERM') {
          expect([answer.status, answer.code]).toEqual([408, 'approval_timeout']);
        } else expect(answer.status).toBe(0);
      }
      expect(upstream.requests.map((r) => r.url).sort()).toEqual(still.map((p) => p.path).sort());
      if (signal === 'SIGTERM') {
        // Audited as a stopping node audits them.
        const pending = byPath.get([...ended][0] as string) as Pending;
        const records = await auditOf(pending.request_id, 3);
        expect(records[1]?.approval).toMatchObject({ id: pending.id, state: 'stopped' });
        expect(records[2]).toMatchObject({ kind: 'request', error_code: 'approval_timeout' });
      }
    }, 120_000);
  }
});
