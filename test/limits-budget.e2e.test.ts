/**
 * Issue 15: cost budgets and per-credential limits end to end. A spawned node whose LLM-like
 * service reads each response's cost (`cost.json: [usage.total_tokens]`) from a JSON body or
 * the final usage event of a server-sent-events stream; a `cost` limit refuses the request
 * after the budget is spent (429 `rate_limited`, `Retry-After`) before anything reaches the
 * upstream. A `per: credential` limit counts two services that share one API key together.
 */
import { gzipSync } from 'node:zlib';
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

describe('cost budgets and per-credential limits (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  const agents: Record<string, RawAgent> = {};

  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.handle((req, res) => {
      if (req.url.startsWith('/llm/stream')) {
        res.setHeader('content-type', 'text/event-stream');
        res.write('data: {"choices":[{"delta":{"content":"hel"}}],"usage":null}\n\n');
        res.write('data: {"choices":[{"delta":{"content":"lo"}}],"usage":null}\n\n');
        // The final usage event, split across writes.
        res.write('data: {"choices":[],"usage":{"prompt_tokens":20,');
        res.end('"completion_tokens":30,"total_tokens":50}}\n\ndata: [DONE]\n\n');
        return;
      }
      res.setHeader('content-type', 'application/json');
      if (req.url.startsWith('/llm/gz')) {
        res.setHeader('content-encoding', 'gzip');
        res.end(gzipSync(JSON.stringify({ id: 'c2', usage: { total_tokens: 60 } })));
      } else if (req.url.startsWith('/llm/'))
        res.end(JSON.stringify({ id: 'c1', usage: { total_tokens: 60 } }));
      else res.end('{}');
    });
    node = await startNode({
      services: {
        llm: {
          upstream: `${upstream.url}/llm`,
          auth: { type: 'bearer', credential: 'llm-key' },
          cost: { json: ['usage.total_tokens'] },
        },
        'search-a': {
          upstream: `${upstream.url}/a`,
          auth: { type: 'bearer', credential: 'shared-key' },
        },
        'search-b': {
          upstream: `${upstream.url}/b`,
          auth: { type: 'bearer', credential: 'shared-key' },
        },
        'search-c': {
          upstream: `${upstream.url}/c`,
          auth: { type: 'bearer', credential: 'own-key' },
        },
      },
      agents: {
        bot: { roles: ['caller'] },
        streamer: { roles: ['caller'] },
        gz: { roles: ['caller'] },
      },
      policies: [{ id: 'all', allow: { roles: ['caller'], methods: ['*'] } }],
      overrides: {
        limits: [
          {
            id: 'tokens',
            match: { services: ['llm'] },
            cost: { max: 100, window: '1h' },
          },
          {
            id: 'shared-key-rate',
            match: { credentials: ['shared-key'] },
            per: 'credential',
            requests: { max: 3, window: '1h' },
          },
        ],
      },
    });
    for (const k of ['llm-key', 'shared-key', 'own-key'])
      await node.setCredential(k, { value: `${k}-secret-0123456789abcdef` });
    for (const name of ['bot', 'streamer', 'gz']) agents[name] = await rawAgent(node, name);
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  async function call(agent: string, path: string): Promise<Answer> {
    const a = agents[agent] as RawAgent;
    const body = '{"model":"m","messages":[]}';
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'accept-encoding': 'gzip, br',
    };
    const added = await signRequest({
      method: 'POST',
      url: node.proxyUrl + path,
      headers,
      body: new TextEncoder().encode(body),
      lease: a.lease,
      key: a.key,
      intent: 'budget e2e',
    });
    const res = await fetch(node.proxyUrl + path, {
      method: 'POST',
      headers: { ...headers, ...added },
      body,
    });
    return { status: res.status, headers: res.headers, body: await res.text() };
  }

  const hits = (prefix: string) => upstream.requests.filter((r) => r.url.startsWith(prefix)).length;

  it('counts the tokens of JSON responses and refuses once the budget is spent, before the upstream', async () => {
    expect((await call('bot', '/llm/chat/1')).status).toBe(200); // 60
    // Under the budget on admission (60 < 100): allowed, and it takes the budget over (120).
    expect((await call('bot', '/llm/chat/2')).status).toBe(200);
    const upstreamBefore = hits('/llm/');
    const over = await call('bot', '/llm/chat/3');
    expect(over.status).toBe(429);
    expect(over.headers.get('content-type')).toBe('application/problem+json');
    const problem = JSON.parse(over.body) as { code: string; detail: string; request_id: string };
    expect(problem.code).toBe('rate_limited');
    expect(problem.detail).toContain('"tokens"');
    const retryAfter = Number(over.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(hits('/llm/')).toBe(upstreamBefore);

    const audit = await node.admin<{ records: Record<string, unknown>[] }>(
      'GET',
      `/v1/audit?request_id=${problem.request_id}`,
    );
    expect(audit.body.records[0]).toMatchObject({
      decision: 'deny',
      rule_ids: ['limit:tokens'],
      error_code: 'rate_limited',
    });
    const metrics = await fetch(`${node.adminUrl}/metrics`, {
      headers: { authorization: `Bearer ${node.operatorToken}` },
    });
    const text = await metrics.text();
    expect(text).toContain('nexus_limit_refusals_total{limit="tokens",kind="cost"} 1');
    expect(text).toContain('nexus_cost_total{service="llm"} 120');
    // The access log line of a costed request says what it cost.
    expect(node.output()).toMatch(/"service":"llm"[^\n]*"cost":60/);
  });

  it('reads the cost of a gzip-coded response (as decoded for scrubbing)', async () => {
    const agent = 'gz';
    expect((await call(agent, '/llm/gz/1')).status).toBe(200); // 60
    expect((await call(agent, '/llm/gz/2')).status).toBe(200); // 120
    expect((await call(agent, '/llm/gz/3')).status).toBe(429);
  });

  it('reads the final usage event of a streamed (SSE) response', async () => {
    // Each agent has its own counter (per: agent, the default).
    const first = await call('streamer', '/llm/stream/1');
    expect(first.status).toBe(200);
    expect(first.body).toContain('"total_tokens":50');
    expect((await call('streamer', '/llm/stream/2')).status).toBe(200); // 50 < 100 -> 100
    expect((await call('streamer', '/llm/stream/3')).status).toBe(429); // 100 spent
  });

  it('counts the services that share a credential together (per: credential)', async () => {
    expect((await call('bot', '/search-a/q1')).status).toBe(200);
    expect((await call('streamer', '/search-b/q2')).status).toBe(200);
    expect((await call('bot', '/search-b/q3')).status).toBe(200);
    const before = hits('/a/') + hits('/b/');
    const over = await call('streamer', '/search-a/q4');
    expect(over.status).toBe(429);
    expect((JSON.parse(over.body) as { detail: string }).detail).toContain('shared-key-rate');
    expect(hits('/a/') + hits('/b/')).toBe(before);
    // Another credential is not counted.
    expect((await call('bot', '/search-c/q5')).status).toBe(200);
  });
});
