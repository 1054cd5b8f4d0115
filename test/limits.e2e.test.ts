/**
 * Issue 15: rate limits and budgets end to end. A spawned node with `limits:` in its
 * config, a recording upstream, signed requests from real agents. An over-limit request
 * gets 429 problem+json `rate_limited` with `Retry-After`, is audited as a denial naming
 * the limit, and never reaches the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

describe('limits and budgets (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  const agents: Record<string, RawAgent> = {};
  // The /slow/hold* handler waits for this gate before it answers.
  let openGate: () => void = () => undefined;
  // Concurrency refusals seen by the tests: the poll that waits for a freed slot may itself be
  // refused while the slot is still held, and the metric must count exactly those.
  let concurrentRefusals = 0;

  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.handle(async (req, res) => {
      if (req.url.startsWith('/slow/hold')) {
        await new Promise<void>((r) => (openGate = r));
      }
      res.setHeader('content-type', 'text/plain');
      res.end('ok');
    });
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'none' } },
        slow: { upstream: `${upstream.url}/slow`, auth: { type: 'none' } },
        bulk: { upstream: `${upstream.url}/bulk`, auth: { type: 'none' } },
      },
      agents: {
        bot: { roles: ['reader'] },
        other: { roles: ['reader'] },
        'bulk-a': { roles: ['bulk'] },
        'bulk-b': { roles: ['bulk'] },
        prober: { roles: ['reader'] },
      },
      policies: [
        {
          id: 'all',
          allow: { roles: ['reader', 'bulk'], services: ['echo', 'slow', 'bulk'], methods: ['*'] },
        },
        { id: 'no-secrets', deny: { paths: ['/secret/**'] } },
      ],
      overrides: {
        // log.format pretty: the node's log is for a terminal (checked at the end).
        log: { format: 'pretty' },
        limits: [
          {
            id: 'prober-rate',
            match: { agents: ['prober'] },
            requests: { max: 2, window: '1h' },
          },
          {
            id: 'bot-rate',
            match: { agents: ['bot'], services: ['echo'] },
            requests: { max: 3, window: '1h' },
          },
          { id: 'one-slow', match: { services: ['slow'] }, per: 'service', concurrent: 1 },
          {
            id: 'bulk-budget',
            match: { roles: ['bulk'] },
            per: 'all',
            bytes: { max: '1KiB', window: '1h' },
          },
        ],
      },
    });
    for (const name of ['bot', 'other', 'bulk-a', 'bulk-b', 'prober'])
      agents[name] = await rawAgent(node, name);
  });

  afterAll(async () => {
    openGate();
    await node?.stop();
    await upstream?.close();
  });

  async function call(
    agent: string,
    path: string,
    init: { method?: string; body?: string; signal?: AbortSignal } = {},
  ): Promise<Answer> {
    const a = agents[agent] as RawAgent;
    const headers: Record<string, string> = {};
    if (init.body !== undefined) headers['content-type'] = 'text/plain';
    const added = await signRequest({
      method: init.method ?? 'GET',
      url: node.proxyUrl + path,
      headers,
      body: init.body === undefined ? undefined : new TextEncoder().encode(init.body),
      lease: a.lease,
      key: a.key,
      intent: 'limits e2e',
    });
    const res = await fetch(node.proxyUrl + path, {
      method: init.method ?? 'GET',
      headers: { ...headers, ...added },
      body: init.body,
      signal: init.signal,
    });
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  const upstreamHits = (prefix: string) =>
    upstream.requests.filter((r) => r.url.startsWith(prefix)).length;

  it('refuses the request over a per-agent rate with 429 and Retry-After, before the upstream', async () => {
    const before = upstreamHits('/items');
    for (let i = 0; i < 3; i++) expect((await call('bot', `/echo/items/${i}`)).status).toBe(200);
    const over = await call('bot', '/echo/items/over', { method: 'POST', body: 'x'.repeat(100) });
    expect(over.status).toBe(429);
    expect(over.headers.get('content-type')).toBe('application/problem+json');
    const problem = JSON.parse(over.body) as { code: string; detail: string; request_id: string };
    expect(problem.code).toBe('rate_limited');
    expect(problem.detail).toContain('bot-rate');
    const retryAfter = Number(over.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    // The upstream saw the three allowed requests and not the fourth.
    expect(upstreamHits('/items')).toBe(before + 3);
    expect(upstream.requests.some((r) => r.url === '/items/over')).toBe(false);
    // Another agent has its own counter; the limit does not name it.
    expect((await call('other', '/echo/items/x')).status).toBe(200);

    // Audited as a denial naming the limit.
    const audit = await node.admin<{ records: Record<string, unknown>[] }>(
      'GET',
      `/v1/audit?request_id=${problem.request_id}`,
    );
    expect(audit.body.records).toHaveLength(1);
    expect(audit.body.records[0]).toMatchObject({
      kind: 'request',
      agent: 'bot',
      service: 'echo',
      decision: 'deny',
      rule_ids: ['limit:bot-rate'],
      error_code: 'rate_limited',
    });
  });

  it('caps concurrent requests and frees the slot when the agent goes away', async () => {
    const first = call('bot', '/slow/hold-a');
    await waitFor(() => upstreamHits('/slow/hold-a') === 1);
    const second = await call('other', '/slow/b');
    expect(second.status).toBe(429);
    concurrentRefusals++;
    expect(JSON.parse(second.body).code).toBe('rate_limited');
    expect(second.headers.get('retry-after')).toBe('1');
    expect(upstreamHits('/slow/b')).toBe(0);
    openGate();
    expect((await first).status).toBe(200);
    expect((await call('other', '/slow/b2')).status).toBe(200);

    // An agent that hangs up mid-request does not keep the slot: it comes back once the
    // held upstream call ends.
    const abort = new AbortController();
    const hung = call('other', '/slow/hold-c', { signal: abort.signal }).catch(() => 'aborted');
    await waitFor(() => upstreamHits('/slow/hold-c') === 1);
    abort.abort();
    expect(await hung).toBe('aborted');
    openGate();
    await waitFor(async () => {
      const res = await call('other', '/slow/d');
      if (res.status === 429) concurrentRefusals++;
      return res.status === 200;
    });
  });

  it('shares a byte budget across the agents of a role and refuses the request that would exceed it', async () => {
    const body = 'b'.repeat(600);
    expect((await call('bulk-a', '/bulk/one', { method: 'POST', body })).status).toBe(200);
    const over = await call('bulk-b', '/bulk/two', { method: 'POST', body });
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body).code).toBe('rate_limited');
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(upstreamHits('/bulk/two')).toBe(0);
    // A small request still fits the budget.
    expect((await call('bulk-b', '/bulk/three', { method: 'POST', body: 'small' })).status).toBe(
      200,
    );
  });

  it('throttles an agent probing the policy: denied requests count against its limit', async () => {
    for (let i = 0; i < 2; i++) {
      const denied = await call('prober', `/echo/secret/${i}`);
      expect(JSON.parse(denied.body).code).toBe('policy_denied');
    }
    const allowedPath = await call('prober', '/echo/open');
    expect(allowedPath.status).toBe(429);
    expect(JSON.parse(allowedPath.body).code).toBe('rate_limited');
    expect(upstream.requests.some((r) => r.url === '/open' || r.url.startsWith('/secret'))).toBe(
      false,
    );
  });

  it('logs in the pretty format when log.format is pretty, with the access lines', async () => {
    const out = node.output();
    expect(out).toMatch(/INFO.*: request/);
    expect(out).toMatch(/"code": "rate_limited"/);
    expect(out).not.toMatch(/^\{"level"/m);
  });

  it('counts refusals in the metrics by limit and kind', async () => {
    const res = await fetch(`${node.adminUrl}/metrics`, {
      headers: { authorization: `Bearer ${node.operatorToken}` },
    });
    const text = await res.text();
    expect(text).toContain('nexus_limit_refusals_total{limit="bot-rate",kind="requests"} 1');
    expect(text).toContain(
      `nexus_limit_refusals_total{limit="one-slow",kind="concurrent"} ${concurrentRefusals}`,
    );
    expect(text).toContain('nexus_limit_refusals_total{limit="bulk-budget",kind="bytes"} 1');
    expect(text).toContain(
      'nexus_requests_total{service="echo",decision="deny",code="rate_limited"} 2',
    );
  });
});

/** Polls `check` until it is true (every 20 ms, at most `ms`). */
async function waitFor(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
