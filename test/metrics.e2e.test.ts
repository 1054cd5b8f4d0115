/**
 * Issue 15: Prometheus `/metrics` on the admin listener, end to end. A spawned node, a
 * recording upstream, the real SDK; the test scrapes the real endpoint after real proxied
 * requests and reads the values back. Access: a scrape token or an operator token; nothing
 * agent-controlled or secret becomes a label.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from './helpers/agents.js';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'metrics-e2e-secret-value-0123456789';
const SCRAPE_TOKEN = 'scrape-token-for-prometheus-0123456789';

/** The value of one sample in a Prometheus text exposition, or undefined. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      got[l[1] as string] = l[2] as string;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[4]);
  }
  return undefined;
}

describe('GET /metrics (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;

  beforeAll(async () => {
    upstream = await startUpstream();
    const deadPort = await freePort();
    const tokenFile = join(await mkdtemp(join(tmpdir(), 'nexus-metrics-')), 'metrics.token');
    await writeFile(tokenFile, SCRAPE_TOKEN + '\n', { mode: 0o600 });
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
        dead: { upstream: `http://127.0.0.1:${deadPort}`, auth: { type: 'none' } },
      },
      agents: { bot: { roles: ['reader'] } },
      policies: [
        { id: 'read', allow: { roles: ['reader'], services: ['echo', 'dead'], methods: ['GET'] } },
      ],
      overrides: { admin: { metrics: { token_file: tokenFile } } },
    });
    await node.setCredential('echo-token', { value: SECRET });
    agent = await node.enroll('bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  const scrape = async (token: string | null = SCRAPE_TOKEN) => {
    const res = await fetch(`${node.adminUrl}/metrics`, {
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  };

  it('counts real requests by service, decision and code, with stage latencies', async () => {
    upstream.handle((_req, res) => {
      // The upstream echoes the injected credential: the scrubber redacts it.
      res.setHeader('content-type', 'text/plain');
      res.end(`token=${SECRET}`);
    });
    for (let i = 0; i < 3; i++) {
      const r = await agent.fetch('echo', `/items/${i}?q=agent-query-value`, {
        intent: 'metrics e2e',
      });
      expect(r.status).toBe(200);
      expect(await r.text()).not.toContain(SECRET);
    }
    expect(await codeOf(agent.fetch('echo', '/items', { method: 'POST', body: 'x' }))).toBe(
      'policy_denied',
    );
    expect(await codeOf(agent.fetch('dead', '/x'))).toBe('upstream_unreachable');
    // An agent-chosen service name that is not configured: counted as `unknown`.
    expect(await codeOf(agent.fetch('no-such-service-attacker-label', '/x'))).toBe(
      'service_unknown',
    );

    const m = await scrape();
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain/);
    const t = m.text;
    expect(
      sample(t, 'nexus_requests_total', { service: 'echo', decision: 'allow', code: 'ok' }),
    ).toBe(3);
    expect(
      sample(t, 'nexus_requests_total', {
        service: 'echo',
        decision: 'deny',
        code: 'policy_denied',
      }),
    ).toBe(1);
    expect(
      sample(t, 'nexus_requests_total', {
        service: 'dead',
        decision: 'allow',
        code: 'upstream_unreachable',
      }),
    ).toBe(1);
    expect(
      sample(t, 'nexus_requests_total', {
        service: 'unknown',
        decision: 'deny',
        code: 'service_unknown',
      }),
    ).toBe(1);
    expect(
      sample(t, 'nexus_upstream_errors_total', { service: 'dead', code: 'upstream_unreachable' }),
    ).toBe(1);
    expect(sample(t, 'nexus_upstream_responses_total', { service: 'echo', class: '2xx' })).toBe(3);
    expect(sample(t, 'nexus_redactions_total', { service: 'echo' })).toBeGreaterThanOrEqual(3);
    // The refused POST went through verify and policy too.
    for (const stage of ['verify', 'policy']) {
      expect(sample(t, 'nexus_stage_duration_seconds_count', { service: 'echo', stage })).toBe(4);
    }
    for (const stage of ['inject', 'audit', 'upstream', 'relay']) {
      expect(
        sample(t, 'nexus_stage_duration_seconds_count', { service: 'echo', stage }),
        stage,
      ).toBe(3);
    }
    expect(
      sample(t, 'nexus_request_duration_seconds_count', { service: 'echo', decision: 'allow' }),
    ).toBe(3);
    // Request + outcome records of the forwarded requests, request records of the refused.
    expect(sample(t, 'nexus_audit_append_duration_seconds_count', { kind: 'request' })).toBe(6);
    expect(sample(t, 'nexus_audit_lag_seconds')).toBeGreaterThanOrEqual(0);
    expect(sample(t, 'nexus_audit_pending_records')).toBeGreaterThanOrEqual(0);
    expect(sample(t, 'nexus_process_resident_memory_bytes')).toBeGreaterThan(0);

    // Nothing agent-controlled or secret is in the exposition.
    for (const leak of [
      SECRET,
      'no-such-service-attacker-label',
      '/items',
      'metrics e2e',
      'echo-token',
    ]) {
      expect(t).not.toContain(leak);
    }
  });

  it('writes one access log line per request, without secrets, query or intent', async () => {
    const lines = node
      .output()
      .split('\n')
      .filter((l) => l.includes('"access"'))
      .map((l) => JSON.parse(l) as { msg: string; access: Record<string, unknown> });
    const ok = lines.filter((l) => l.access.service === 'echo' && l.access.code === 'ok');
    expect(ok).toHaveLength(3);
    expect(ok[0]?.msg).toBe('request');
    expect(ok[0]?.access).toMatchObject({
      agent: 'bot',
      method: 'GET',
      path: '/items/0',
      status: 200,
      decision: 'allow',
      upstream_status: 200,
      bytes_in: 0,
      request_id: expect.any(String),
      duration_ms: expect.any(Number),
    });
    expect(lines.find((l) => l.access.code === 'upstream_unreachable')?.access.status).toBe(502);
    expect(lines.find((l) => l.access.code === 'service_unknown')?.access.status).toBe(404);
    const all = node.output();
    for (const leak of [SECRET, 'agent-query-value', 'metrics e2e'])
      expect(all).not.toContain(leak);
  });

  it('wants the scrape token or an operator token', async () => {
    expect((await scrape(null)).status).toBe(401);
    const wrong = await scrape('scrape-token-for-prometheus-0123456780');
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.text).code).toBe('unauthorized');
    expect((await scrape(node.operatorToken)).status).toBe(200);
    // The scrape token is not an operator token: the rest of the admin API refuses it.
    const api = await fetch(`${node.adminUrl}/v1/agents`, {
      headers: { authorization: `Bearer ${SCRAPE_TOKEN}` },
    });
    expect(api.status).toBe(401);
    const post = await fetch(`${node.adminUrl}/metrics`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SCRAPE_TOKEN}` },
    });
    expect(post.status).toBe(405);
  });
});
