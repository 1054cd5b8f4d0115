/**
 * Issue 13 end to end: real `nexus up` nodes on one PostgreSQL database (a fresh database
 * per suite, dropped afterwards). One node serves end to end; two nodes behind one public
 * URL share replay protection (through PostgreSQL, or through Redis when configured) and
 * fail closed, then recover by themselves, when the dependency goes away; each audits into
 * its own chain and `nexus audit verify` checks them all.
 */
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import {
  startRelay,
  startTestRedis,
  type CuttableRelay,
  type TestRedis,
} from './helpers/faults.js';
import { freePort, runCli, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  createTestDatabase,
  TEST_PG_SERVER,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

const SECRET = 'cluster-e2e-secret-value-0123456789';

/** Signs a GET for `publicUrl + path` (what the agent sees: the load balancer). */
function signed(publicUrl: string, agent: RawAgent, path: string): Promise<Record<string, string>> {
  return signRequest({
    method: 'GET',
    url: publicUrl + path,
    headers: {},
    lease: agent.lease,
    key: agent.key,
    intent: 'cluster e2e',
  });
}

/** Sends already-signed headers to one node's own address. */
async function sendTo(node: TestNode, path: string, headers: Record<string, string>) {
  const res = await fetch(node.proxyUrl + path, { headers });
  const text = await res.text();
  let code: string | undefined;
  if ((res.headers.get('content-type') ?? '').includes('problem+json')) {
    code = (JSON.parse(text) as { code?: string }).code;
  }
  return { status: res.status, text, code };
}

/** Retries a freshly signed request until it is forwarded; fails the test past 20 s. */
async function untilForwarded(
  node: TestNode,
  publicUrl: string,
  agent: RawAgent,
  path: string,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await sendTo(node, path, await signed(publicUrl, agent, path));
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`still refused: ${r.status} ${r.code}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** The lease id (`jti`) of an agent's lease. */
function leaseId(agent: RawAgent): string {
  const payload = agent.lease.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { jti: string }).jti;
}

/** Retries `check` until it passes; fails the test with its last error past 10 s. */
async function eventually(check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + 10_000;
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

/**
 * Sends freshly signed requests to `node` until one is refused with `code`; returns when.
 * The time it took is reported (issue 13 asks for one second), not asserted: the
 * machine running the suite may be loaded.
 */
async function until(
  node: TestNode,
  publicUrl: string,
  agent: RawAgent,
  code: string | string[],
): Promise<number> {
  const codes = Array.isArray(code) ? code : [code];
  let at = 0;
  await eventually(async () => {
    const r = await sendTo(node, '/echo/poll', await signed(publicUrl, agent, '/echo/poll'));
    expect(codes).toContain(r.code);
    at = Date.now();
  });
  return at;
}

/** Measured propagation times, printed once at the end. */
const propagation: { what: string; ms: number }[] = [];
afterAll(() => {
  if (propagation.length > 0) console.log('cluster propagation (ms):', JSON.stringify(propagation));
});

const services = (upstream: TestUpstream) => ({
  echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
});
const agents = { bot: { roles: ['reader'] } };
const policies = [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }];

describe('a node on PostgreSQL', () => {
  let db: TestDatabase;
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    db = await createTestDatabase('e2e1');
    upstream = await startUpstream();
    node = await startNode({ store: db.url, services: services(upstream), agents, policies });
    await node.setCredential('echo-token', { value: SECRET });
  });

  afterAll(async () => {
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => node?.stop(),
      () => upstream?.close(),
      () => db?.drop(),
    ];
    for (const step of steps) {
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    }
  });

  it('enrolls, forwards a signed request with the credential, and audit verify passes', async () => {
    const agent = await node.enroll('bot');
    try {
      const res = await agent.fetch('echo', '/items/1', { intent: 'read an item' });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).not.toContain(SECRET);
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`);
    } finally {
      agent.close();
    }
    const audit = await node.admin<{ records: { chain?: string; decision?: string }[] }>(
      'GET',
      '/v1/audit?service=echo',
    );
    expect(audit.status).toBe(200);
    expect(audit.body.records.length).toBeGreaterThan(0);
    expect(audit.body.records[0]?.chain).toMatch(/^[A-Za-z0-9_-]+$/);
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code).toBe(0);
    const report = JSON.parse(verify.stdout) as { ok: boolean; count: number; chains: number };
    expect(report).toMatchObject({ ok: true, chains: 1 });
    expect(report.count).toBeGreaterThan(0);
  });

  it('nexus migrate brings the schema up to date (the Helm migration Job runs it)', async () => {
    const r = await node.cli(['migrate', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ driver: 'postgres', schema_version: 7 });
  });

  it('nexus init --store refuses a URL with a password before writing anything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nexus-init-'));
    const r = await runCli(['init', '--dir', dir, '--store', 'postgres://nexus:hunter2@db/nexus']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toContain('hunter2');
    expect(await readdir(dir)).toEqual([]);
  });

  it('keeps serving after a restart, on a new audit chain, and verify checks both', async () => {
    await node.restart();
    const agent = await node.enroll('bot');
    try {
      expect((await agent.fetch('echo', '/items/2')).status).toBe(200);
    } finally {
      agent.close();
    }
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, chains: 2 });
  });
});

/**
 * Two nodes behind one public URL (the load balancer's: requests are signed for it and
 * sent to either node), on one database reached through a relay the test can cut.
 */
function twoNodeSuite(name: string, withRedis: boolean) {
  describe(name, () => {
    let db: TestDatabase;
    let relay: CuttableRelay;
    let redis: TestRedis | undefined;
    let upstream: TestUpstream;
    let publicUrl: string;
    let a: TestNode;
    let b: TestNode;
    let agent: RawAgent;

    beforeAll(async () => {
      db = await createTestDatabase(withRedis ? 'redis' : 'pg');
      relay = await startRelay(Number(new URL(TEST_PG_SERVER).port || 5432));
      if (withRedis) redis = await startTestRedis();
      upstream = await startUpstream();
      publicUrl = `http://127.0.0.1:${await freePort()}`;
      const store = `postgres://postgres@127.0.0.1:${relay.port}/${db.name}`;
      const overrides = {
        proxy: { public_url: publicUrl },
        ...(redis === undefined ? {} : { redis: { url: redis.url, key_prefix: 'e2e:' } }),
      };
      a = await startNode({ store, services: services(upstream), agents, policies, overrides });
      b = await startNode({ join: a, services: services(upstream), agents, policies, overrides });
      await a.setCredential('echo-token', { value: SECRET });
      agent = await rawAgent(a, 'bot');
    });

    afterAll(async () => {
      // Each step alone: a failing one must not leave the database behind.
      const steps: (() => Promise<unknown> | undefined)[] = [
        () => a?.stop(),
        () => b?.stop(),
        () => redis?.kill(),
        () => upstream?.close(),
        () => relay?.close(),
        () => db?.drop(),
      ];
      for (const step of steps) {
        await Promise.resolve()
          .then(step)
          .catch(() => undefined);
      }
    });

    it('a request accepted by one node is a replay at the other', async () => {
      const headers = await signed(publicUrl, agent, '/echo/once');
      expect((await sendTo(a, '/echo/once', headers)).status).toBe(200);
      const again = await sendTo(b, '/echo/once', headers);
      expect(again).toMatchObject({ status: 401, code: 'replay_detected' });
      expect(await sendTo(a, '/echo/once', headers)).toMatchObject({ code: 'replay_detected' });
      // Sent to both at once: exactly one is forwarded.
      upstream.reset();
      const race = await signed(publicUrl, agent, '/echo/race');
      const both = await Promise.all([
        sendTo(a, '/echo/race', race),
        sendTo(b, '/echo/race', race),
      ]);
      expect(both.map((r) => r.status).sort()).toEqual([200, 401]);
      expect(upstream.requests).toHaveLength(1);
    });

    it('a lease revoked on one node is refused by the other; a disabled agent is disabled on all', async () => {
      const held = await rawAgent(a, 'bot');
      expect((await sendTo(b, '/echo/r1', await signed(publicUrl, held, '/echo/r1'))).status).toBe(
        200,
      );
      const jti = leaseId(held);
      const revokedAt = Date.now();
      expect((await a.admin('POST', `/v1/leases/${jti}/revoke`)).status).toBe(200);
      const took = await until(b, publicUrl, held, 'lease_revoked');
      propagation.push({ what: 'lease revoke', ms: took - revokedAt });

      const other = await rawAgent(b, 'bot');
      expect((await sendTo(a, '/echo/d1', await signed(publicUrl, other, '/echo/d1'))).status).toBe(
        200,
      );
      const disabledAt = Date.now();
      expect((await b.admin('POST', '/v1/agents/bot/disable')).status).toBe(200);
      const tookDisable = await until(a, publicUrl, other, ['agent_disabled', 'lease_revoked']);
      propagation.push({ what: 'agent disable', ms: tookDisable - disabledAt });
      // No node enrolls it any more; enabled again on one node, it enrolls on the other.
      expect((await a.admin('POST', '/v1/agents/bot/enrollment-tokens', {})).status).toBe(403);
      expect((await a.admin('POST', '/v1/agents/bot/enable')).status).toBe(200);
      // The disable's revocation epoch covers its whole second (leases carry whole-second
      // iat): a lease issued in that second stays revoked by design.
      await new Promise((r) => setTimeout(r, 1005 - (Date.now() % 1000)));
      await eventually(async () => {
        expect((await b.admin('POST', '/v1/agents/bot/enrollment-tokens', {})).status).toBe(201);
      });
      agent = await rawAgent(b, 'bot');
    });

    it('a signing key rotated on one node verifies on the other', async () => {
      expect((await a.admin('POST', '/v1/authority/rotate-key')).status).toBe(200);
      // A lease signed with the new key (issued by a) is accepted by b.
      const fresh = await rawAgent(a, 'bot');
      await eventually(async () => {
        const r = await sendTo(b, '/echo/k1', await signed(publicUrl, fresh, '/echo/k1'));
        expect(r.code).toBeUndefined();
        expect(r.status).toBe(200);
      });
      agent = fresh;
    });

    it('a config reload on one node reaches the other, which re-reads its own file', async () => {
      // Each node's own file gains a service; only node a is asked to reload.
      const original = new Map<TestNode, string>();
      for (const node of [a, b]) {
        const text = await readFile(node.configPath, 'utf8');
        original.set(node, text);
        const cfg = parse(text) as {
          services: Record<string, unknown>;
          policies: unknown[];
        };
        cfg.services['echo2'] = cfg.services['echo'];
        cfg.policies = [
          { ...policies[0], allow: { roles: ['reader'], services: ['echo', 'echo2'] } },
        ];
        await writeFile(node.configPath, stringify(cfg));
      }
      const path = '/echo2/reloaded';
      expect((await sendTo(b, path, await signed(publicUrl, agent, path))).code).toBeDefined();
      const r = await a.cli(['reload', '--json']);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as {
        services: number;
        cluster: { other_nodes: number; reports: unknown[] };
      };
      expect(out.services).toBe(2);
      expect(out.cluster.other_nodes).toBe(1);
      expect(out.cluster.reports).toEqual([
        expect.objectContaining({ ok: true, result: expect.objectContaining({ services: 2 }) }),
      ]);
      const after = '/echo2/after';
      expect((await sendTo(b, after, await signed(publicUrl, agent, after))).status).toBe(200);

      // A file that no longer loads: that node reports the error code and keeps running.
      await writeFile(b.configPath, 'version: 1\nservices: [not, a, map]\n');
      const bad = await a.admin<{ cluster: { reports: { ok: boolean; code?: string }[] } }>(
        'POST',
        '/v1/config/reload',
      );
      expect(bad.status).toBe(200);
      expect(bad.body.cluster.reports).toEqual([expect.objectContaining({ ok: false })]);
      expect(bad.body.cluster.reports[0]?.code).toMatch(/^[a-z_]+$/);
      const still = '/echo2/still';
      expect((await sendTo(b, still, await signed(publicUrl, agent, still))).status).toBe(200);
      for (const [node, text] of original) await writeFile(node.configPath, text);
      expect((await a.admin('POST', '/v1/config/reload')).status).toBe(200);
    });

    it('fails closed while its shared dependency is down, then recovers by itself', async () => {
      upstream.reset();
      if (withRedis) await redis?.kill();
      else relay.cut();
      try {
        for (const node of [a, b]) {
          const r = await sendTo(node, '/echo/down', await signed(publicUrl, agent, '/echo/down'));
          expect(r.status).toBe(503);
          expect(
            withRedis ? ['replay_unavailable'] : ['replay_unavailable', 'audit_unavailable'],
          ).toContain(r.code);
          expect(r.text).not.toContain(SECRET);
        }
        expect(upstream.requests).toHaveLength(0);
      } finally {
        if (withRedis) await redis?.start();
        else relay.restore();
      }
      await untilForwarded(a, publicUrl, agent, '/echo/back');
      await untilForwarded(b, publicUrl, agent, '/echo/back');
      // Replay protection is whole again across the nodes.
      const headers = await signed(publicUrl, agent, '/echo/after');
      expect((await sendTo(b, '/echo/after', headers)).status).toBe(200);
      expect(await sendTo(a, '/echo/after', headers)).toMatchObject({ code: 'replay_detected' });
      // Every record either node reported durable is in a chain that verifies.
      const verify = await a.cli(['audit', 'verify', '--json']);
      expect(verify.code).toBe(0);
      expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, chains: 2 });
    });

    // The audit path does not depend on where replay records live: run once.
    it.skipIf(withRedis)(
      'kill -9 of a node under load loses no audit record of a forwarded request',
      async () => {
        upstream.reset();
        const load = await rawAgent(b, 'bot');
        let i = 0;
        let stop = false;
        const worker = async () => {
          while (!stop && i < 2000) {
            const path = `/echo/load/${i++}`;
            await sendTo(a, path, await signed(publicUrl, load, path)).catch(() => undefined);
          }
        };
        const workers = Array.from({ length: 8 }, worker);
        // Killed mid-stream, once it has forwarded some.
        await eventually(async () => {
          expect(upstream.requests.length).toBeGreaterThan(40);
        });
        a.process.kill('SIGKILL');
        stop = true;
        await Promise.all(workers);
        const forwarded = upstream.requests.map((r) => r.url);
        expect(forwarded.length).toBeGreaterThan(40);
        // Every request the upstream received has its request record in the store.
        const audit = await b.admin<{ records: { kind?: string; path?: string }[] }>(
          'GET',
          '/v1/audit?service=echo&kind=request&limit=10000',
        );
        const audited = new Set(audit.body.records.map((r) => r.path));
        for (const path of forwarded) expect(audited).toContain(path);
        await a.restart();
        const verify = await b.cli(['audit', 'verify', '--json']);
        expect(verify.code).toBe(0);
        expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true });
      },
    );
  });
}

twoNodeSuite('two nodes sharing replay through PostgreSQL', false);
twoNodeSuite('two nodes sharing replay through Redis', true);
