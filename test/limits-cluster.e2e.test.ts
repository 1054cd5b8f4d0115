/**
 * Issues 13 and 15: limits shared by a cluster. Two real `nexus up` nodes on one
 * PostgreSQL database (a fresh one, dropped afterwards) and one private redis-server:
 * requests sent through either node count against one limit, so the request past it is
 * refused (429 `rate_limited`) on whichever node it reaches and never gets to the
 * upstream; a concurrency slot held on one node is taken on the other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { startTestRedis, type TestRedis } from './helpers/faults.js';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  createTestDatabase,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

describe('limits shared by two nodes through Redis', () => {
  let db: TestDatabase;
  let redis: TestRedis;
  let upstream: TestUpstream;
  let publicUrl: string;
  let a: TestNode;
  let b: TestNode;
  let bot: RawAgent;
  // Opens the gate a held upstream request waits for.
  let openGate: () => void = () => undefined;

  /** Signs a GET for the public URL (the load balancer's) and sends it to `node`. */
  async function send(node: TestNode, agent: RawAgent, path: string) {
    const headers = await signRequest({
      method: 'GET',
      url: publicUrl + path,
      headers: {},
      lease: agent.lease,
      key: agent.key,
      intent: 'limits cluster e2e',
    });
    const res = await fetch(node.proxyUrl + path, { headers });
    const text = await res.text();
    const code = (res.headers.get('content-type') ?? '').includes('problem+json')
      ? (JSON.parse(text) as { code?: string }).code
      : undefined;
    return { status: res.status, code, retryAfter: res.headers.get('retry-after'), text };
  }

  beforeAll(async () => {
    db = await createTestDatabase('limits');
    redis = await startTestRedis();
    upstream = await startUpstream();
    publicUrl = `http://127.0.0.1:${await freePort()}`;
    const options = {
      services: {
        echo: { upstream: upstream.url, auth: { type: 'none' } },
        slow: { upstream: `${upstream.url}/slow`, auth: { type: 'none' } },
        llm: {
          upstream: `${upstream.url}/llm`,
          auth: { type: 'none' },
          cost: { json: ['usage.total_tokens', 'usage.extra'] },
        },
      },
      agents: { bot: { roles: ['reader'] }, spender: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], services: ['echo', 'slow', 'llm'] } }],
      overrides: {
        proxy: { public_url: publicUrl },
        redis: { url: redis.url, key_prefix: 'limits-e2e:' },
        limits: [
          {
            id: 'bot-rate',
            match: { agents: ['bot'], services: ['echo'] },
            requests: { max: 4, window: '1h' },
          },
          { id: 'one-slow', match: { services: ['slow'] }, per: 'service', concurrent: 1 },
          { id: 'tokens', match: { services: ['llm'] }, cost: { max: 1000, window: '1h' } },
        ],
      },
    };
    a = await startNode({ store: db.url, ...options });
    b = await startNode({ join: a, ...options });
    bot = await rawAgent(a, 'bot');
  });

  afterAll(async () => {
    openGate();
    // Each step alone: a failing one must not leave the database behind.
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => a?.stop(),
      () => b?.stop(),
      () => redis?.kill(),
      () => upstream?.close(),
      () => db?.drop(),
    ];
    for (const step of steps) {
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    }
  });

  it('counts requests through both nodes against one limit', async () => {
    upstream.reset();
    // Four allowed in all, alternating nodes: each node alone has seen only two.
    for (const [i, node] of [a, b, a, b].entries()) {
      expect((await send(node, bot, `/echo/n${i}`)).status).toBe(200);
    }
    // The fifth is refused on either node, and the upstream never sees it.
    for (const node of [a, b]) {
      const r = await send(node, bot, '/echo/over');
      expect(r).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(r.text).toContain('bot-rate');
    }
    expect(upstream.requests.map((r) => r.url)).toEqual(['/n0', '/n1', '/n2', '/n3']);
  });

  it('review: a hostile upstream cost of 1e300 (or two that sum to Infinity) spends the budget instead of counting 0', async () => {
    upstream.reset();
    upstream.handle((req, res) => {
      res.setHeader('content-type', 'application/json');
      // Each alone is finite; their sum overflows to Infinity.
      res.end(JSON.stringify({ usage: { total_tokens: 1e300, extra: 1.7e308 } }));
    });
    const spender = await rawAgent(a, 'spender');
    // Under the budget on admission (0 < 1000): allowed; its cost is added as it ends.
    expect((await send(a, spender, '/llm/one')).status).toBe(200);
    // The cost reaches the shared counter (Redis refused the add of 1e300 and it was lost).
    const view = async () =>
      (
        await a.admin<{ limits: { id: string; counters?: { cost?: { used: number } }[] }[] }>(
          'GET',
          '/v1/limits',
        )
      ).body;
    const used = async () => {
      const l = (await view()).limits.find((x) => x.id === 'tokens');
      return Math.max(0, ...(l?.counters ?? []).map((c) => c.cost?.used ?? 0));
    };
    while ((await used()) === 0) await new Promise((r) => setTimeout(r, 20));
    for (const node of [a, b]) {
      const r = await send(node, spender, '/llm/two');
      expect(r).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(r.text).toContain('tokens');
    }
    expect(upstream.requests.map((r) => r.url)).toEqual(['/llm/one']);
  });

  it('a concurrency slot held on one node is taken on the other until released', async () => {
    upstream.reset();
    // /hold waits for the gate before it answers.
    upstream.handle(async (req, res) => {
      if (req.url.startsWith('/slow/hold')) await new Promise<void>((r) => (openGate = r));
      res.setHeader('content-type', 'text/plain');
      res.end('ok');
    });
    const held = send(a, bot, '/slow/hold');
    // Wait until the held request reached the upstream (its slot is taken).
    while (upstream.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    const refused = await send(b, bot, '/slow/other');
    expect(refused).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(refused.text).toContain('one-slow');
    openGate();
    expect((await held).status).toBe(200);
    // The slot is given back when a's response ends: b takes it.
    let r = await send(b, bot, '/slow/after');
    for (let i = 0; r.status === 429 && i < 50; i++) {
      await new Promise((res) => setTimeout(res, 20));
      r = await send(b, bot, '/slow/after');
    }
    expect(r.status).toBe(200);
    expect(upstream.requests.map((q) => q.url)).toEqual(['/slow/hold', '/slow/after']);
  });
});
