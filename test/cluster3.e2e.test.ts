/**
 * Issue 13, the cluster test: three real `nexus up` nodes on a PRIVATE PostgreSQL server
 * and a PRIVATE Redis (both started here, so they can be stopped), behind a round-robin
 * load balancer whose URL is every node's `proxy.public_url` (agents sign for it).
 *
 * - a signed request replayed through the balancer (so to another node) is refused;
 * - a lease revoked on one node, and an agent disabled on one, are refused by the others;
 * - kill -9 of one node under load: every request the upstream received (each has a
 *   unique path, its id) has a durable request record, and `audit verify` passes;
 * - Redis stopped: 503 `replay_unavailable`, nothing forwarded; recovery by itself;
 * - PostgreSQL stopped: 503 with a clear code, nothing forwarded; recovery by itself.
 *
 * Revocation and agent changes are checked against the spec's bound (§12.3, one second
 * from the admin call to the refusal at every other node) by polling with that
 * deadline; the times measured are printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { startBalancer, type TestBalancer } from './helpers/balancer.js';
import { startTestRedis, type TestRedis } from './helpers/faults.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startPrivatePostgres, type PrivatePostgres } from './helpers/private-postgres.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'cluster3-e2e-secret-value-0123456789';

interface Answer {
  status: number;
  code: string | undefined;
  text: string;
}

async function send(base: string, path: string, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(base + path, { headers });
  const text = await res.text();
  const code = (res.headers.get('content-type') ?? '').includes('problem+json')
    ? (JSON.parse(text) as { code?: string }).code
    : undefined;
  return { status: res.status, code, text };
}

/** Retries `check` until it passes; fails with its last error past `ms`. */
async function eventually(check: () => Promise<void>, ms = 10_000): Promise<void> {
  return until(check, Date.now() + ms);
}

/**
 * Retries `check` until it passes; no attempt starts after `deadline` (ms since the
 * epoch), and the last error fails the test.
 */
async function until(check: () => Promise<void>, deadline: number): Promise<void> {
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function leaseId(agent: RawAgent): string {
  const payload = agent.lease.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { jti: string }).jti;
}

/** The spec's bound on revocations and agent changes reaching every node (§12.3). */
const PROPAGATION_BOUND_MS = 1000;

const timings: { what: string; ms: number }[] = [];
afterAll(() => {
  if (timings.length > 0) console.log('cluster3 (ms):', JSON.stringify(timings));
});

describe('three nodes on PostgreSQL and Redis behind a round-robin balancer', () => {
  let pgsrv: PrivatePostgres;
  let redis: TestRedis;
  let upstream: TestUpstream;
  let lb: TestBalancer;
  let nodes: TestNode[] = [];
  let agent: RawAgent;
  let n = 0;

  const signed = (a: RawAgent, path: string) =>
    signRequest({
      method: 'GET',
      url: lb.url + path,
      headers: {},
      lease: a.lease,
      key: a.key,
      intent: 'cluster3',
    });
  /** A fresh signed request through the balancer. */
  const viaLb = async (a: RawAgent, prefix: string) => {
    const path = `/echo/${prefix}/${n++}`;
    return send(lb.url, path, await signed(a, path));
  };
  /** A fresh signed request sent to one node directly. */
  const toNode = async (node: TestNode, a: RawAgent, prefix: string) => {
    const path = `/echo/${prefix}/${n++}`;
    return send(node.proxyUrl, path, await signed(a, path));
  };

  beforeAll(async () => {
    pgsrv = await startPrivatePostgres();
    redis = await startTestRedis();
    upstream = await startUpstream();
    lb = await startBalancer([]);
    const config = {
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
      },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }],
      overrides: {
        proxy: { public_url: lb.url },
        redis: { url: redis.url, key_prefix: 'c3:' },
      },
    };
    const first = await startNode({ store: pgsrv.url, ...config });
    nodes = [
      first,
      await startNode({ join: first, ...config }),
      await startNode({ join: first, ...config }),
    ];
    lb.targets = nodes.map((node) => node.proxyUrl);
    await first.setCredential('echo-token', { value: SECRET });
    agent = await rawAgent(first, 'bot');
  }, 60_000);

  afterAll(async () => {
    const steps: (() => Promise<unknown> | undefined)[] = [
      ...nodes.map((node) => () => node.stop()),
      () => lb?.close(),
      () => upstream?.close(),
      () => redis?.kill(),
      () => pgsrv?.destroy(),
    ];
    for (const step of steps) {
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    }
  });

  it('a signed request replayed through the balancer (to another node) is refused', async () => {
    upstream.reset();
    const path = '/echo/once';
    const headers = await signed(agent, path);
    const answers = [];
    // Round robin: three sends reach three different nodes.
    for (let i = 0; i < 3; i++) answers.push(await send(lb.url, path, headers));
    expect(answers.map((a) => a.status)).toEqual([200, 401, 401]);
    expect(answers.slice(1).map((a) => a.code)).toEqual(['replay_detected', 'replay_detected']);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(answers[0]?.text).not.toContain(SECRET);
  });

  it('a lease revoked on one node is refused by the others', async () => {
    const held = await rawAgent(nodes[1] as TestNode, 'bot');
    for (const node of nodes) expect((await toNode(node, held, 'pre')).status).toBe(200);
    const at = Date.now();
    expect((await nodes[0]?.admin('POST', `/v1/leases/${leaseId(held)}/revoke`))?.status).toBe(200);
    for (const node of nodes.slice(1)) {
      await until(async () => {
        expect((await toNode(node, held, 'revoked')).code).toBe('lease_revoked');
      }, at + PROPAGATION_BOUND_MS);
      timings.push({ what: `lease revoke seen by ${node.proxyUrl}`, ms: Date.now() - at });
    }
  });

  it('an agent disabled on one node is disabled on all', async () => {
    const other = await rawAgent(nodes[2] as TestNode, 'bot');
    expect((await viaLb(other, 'pre-disable')).status).toBe(200);
    const at = Date.now();
    expect((await nodes[2]?.admin('POST', '/v1/agents/bot/disable'))?.status).toBe(200);
    for (const node of nodes) {
      await until(async () => {
        expect(['agent_disabled', 'lease_revoked']).toContain(
          (await toNode(node, other, 'disabled')).code,
        );
        // No node enrolls it any more.
        expect((await node.admin('POST', '/v1/agents/bot/enrollment-tokens', {})).status).toBe(403);
      }, at + PROPAGATION_BOUND_MS);
      timings.push({ what: `agent disable seen by ${node.proxyUrl}`, ms: Date.now() - at });
    }
    expect((await nodes[0]?.admin('POST', '/v1/agents/bot/enable'))?.status).toBe(200);
    // Leases carry whole-second iat: one issued in the disable's second stays revoked.
    await new Promise((r) => setTimeout(r, 1005 - (Date.now() % 1000)));
    await eventually(async () => {
      agent = await rawAgent(nodes[1] as TestNode, 'bot');
      expect((await viaLb(agent, 'enabled')).status).toBe(200);
    });
  });

  it('kill -9 of one node under load loses no audit record; audit verify passes', async () => {
    upstream.reset();
    let stop = false;
    const worker = async () => {
      while (!stop) await viaLb(agent, 'load').catch(() => undefined);
    };
    const workers = Array.from({ length: 6 }, worker);
    await eventually(async () => {
      expect(upstream.requests.length).toBeGreaterThan(60);
    });
    const victim = nodes[1] as TestNode;
    victim.process.kill('SIGKILL');
    // Keep the load on the two survivors for a moment (the balancer still tries all three).
    const after = upstream.requests.length;
    await eventually(async () => {
      expect(upstream.requests.length).toBeGreaterThan(after + 30);
    });
    stop = true;
    await Promise.all(workers);
    const forwarded = upstream.requests.map((r) => r.url);
    expect(new Set(forwarded).size).toBe(forwarded.length);
    const audit = await nodes[0]?.admin<{ records: { path?: string; decision?: string }[] }>(
      'GET',
      '/v1/audit?service=echo&kind=request&limit=10000',
    );
    const audited = new Set(audit?.body.records.map((r) => r.path));
    const missing = forwarded.filter((p) => !audited.has(p));
    expect(missing).toEqual([]);
    const verify = await nodes[0]?.cli(['audit', 'verify', '--json']);
    expect(verify?.code).toBe(0);
    const report = JSON.parse(verify?.stdout ?? '{}') as { ok: boolean; chains: number };
    expect(report.ok).toBe(true);
    expect(report.chains).toBeGreaterThanOrEqual(3);
    timings.push({
      what: 'requests forwarded in the kill test (a count, not ms)',
      ms: forwarded.length,
    });
    await victim.restart();
  });

  it('Redis stopped: 503 replay_unavailable on every node, nothing forwarded; then recovery', async () => {
    upstream.reset();
    await redis.kill();
    try {
      for (const node of nodes) {
        const r = await toNode(node, agent, 'redis-down');
        expect(r.status).toBe(503);
        expect(r.code).toBe('replay_unavailable');
        expect(r.text).not.toContain(SECRET);
      }
      expect(upstream.requests).toHaveLength(0);
    } finally {
      await redis.start();
    }
    const at = Date.now();
    for (const node of nodes) {
      await eventually(async () => {
        expect((await toNode(node, agent, 'redis-back')).status).toBe(200);
      });
    }
    timings.push({ what: 'recovery after redis restart', ms: Date.now() - at });
  });

  it('PostgreSQL stopped: 503 with a clear code on every node, nothing forwarded; then recovery', async () => {
    upstream.reset();
    await pgsrv.stop();
    try {
      for (const node of nodes) {
        const r = await toNode(node, agent, 'pg-down');
        expect(r.status).toBe(503);
        expect(['audit_unavailable', 'store_unavailable']).toContain(r.code);
        expect(r.text).not.toContain(SECRET);
      }
      // Admin calls that need the store say so too.
      const admin = await nodes[0]?.admin<{ code?: string }>('GET', '/v1/agents');
      expect(admin?.status).toBe(503);
      expect(admin?.body.code).toBe('store_unavailable');
      expect(upstream.requests).toHaveLength(0);
    } finally {
      await pgsrv.start();
    }
    const at = Date.now();
    for (const node of nodes) {
      await eventually(async () => {
        expect((await toNode(node, agent, 'pg-back')).status).toBe(200);
      }, 20_000);
    }
    timings.push({ what: 'recovery after postgres restart', ms: Date.now() - at });
    const verify = await nodes[0]?.cli(['audit', 'verify', '--json']);
    expect(verify?.code).toBe(0);
    expect((JSON.parse(verify?.stdout ?? '{}') as { ok: boolean }).ok).toBe(true);
  });
});
