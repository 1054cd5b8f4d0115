/**
 * Issue 13: requests held by `approve` rules across the nodes of a PostgreSQL cluster,
 * with Redis (notices by pub/sub) and without (PostgreSQL NOTIFY). Three real `nexus up`
 * nodes on a fresh database (reached through a relay the test can cut), behind one public
 * URL, a recording upstream and a webhook server. Requests held on different nodes are
 * listed by every node; a decision (operator or webhook callback) on a node that does not
 * hold the request is applied once by the holder: approved -> forwarded once, denied ->
 * never; a second decision, concurrent ones and an unknown id answer `not_found` as on one
 * node; with the database cut a decision answers 503 `store_unavailable` and nothing is
 * forwarded; SIGTERM of a holder ends its requests (`approval_timeout`) and they leave the
 * list at once; kill -9 of a holder: they leave the list within the liveness window.
 */
import { createHmac } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import {
  startRelay,
  startTestRedis,
  type CuttableRelay,
  type TestRedis,
} from './helpers/faults.js';
import { freePort, type TestNode, startNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  createTestDatabase,
  TEST_PG_SERVER,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

const HOOK_KEY = 'cluster-approvals-webhook-key-0123456789';

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

/** Polls until `check` passes. */
async function eventually(check: () => Promise<void> | void, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Measured times, printed once at the end (reported, not asserted beyond a bound). */
const measured: { what: string; ms: number }[] = [];
afterAll(() => {
  if (measured.length > 0) console.log('cluster approvals (ms):', JSON.stringify(measured));
});

function suite(name: string, withRedis: boolean) {
  describe(name, () => {
    let db: TestDatabase;
    let relay: CuttableRelay;
    let redis: TestRedis | undefined;
    let upstream: TestUpstream;
    let hook: Server;
    let publicUrl: string;
    let a: TestNode;
    let b: TestNode;
    let c: TestNode;
    let agent: RawAgent;

    beforeAll(async () => {
      hook = createServer((req, res) => {
        req.resume();
        // Decided later, through the callback.
        req.on('end', () => {
          res.statusCode = 202;
          res.end('{}');
        });
      });
      await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
      db = await createTestDatabase(withRedis ? 'aprr' : 'aprp');
      relay = await startRelay(Number(new URL(TEST_PG_SERVER).port || 5432));
      if (withRedis) redis = await startTestRedis();
      upstream = await startUpstream();
      publicUrl = `http://127.0.0.1:${await freePort()}`;
      const store = `postgres://postgres@127.0.0.1:${relay.port}/${db.name}`;
      const common = {
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
            timeout: '240s',
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
          {
            id: 'short',
            approve: { roles: ['deployer'], methods: ['POST'], paths: ['/short/**'] },
            timeout: '3s',
          },
        ],
        overrides: {
          proxy: { public_url: publicUrl },
          ...(redis === undefined
            ? {}
            : { redis: { url: redis.url, key_prefix: `apr-${db.name}:` } }),
        },
      };
      a = await startNode({ store, ...common });
      [b, c] = await Promise.all([
        startNode({ join: a, ...common }),
        startNode({ join: a, ...common }),
      ]);
      await a.setCredential('approval-hook-key', { value: HOOK_KEY });
      agent = await rawAgent(a, 'bot');
    }, 120_000);

    afterAll(async () => {
      const steps: (() => Promise<unknown> | undefined)[] = [
        () => a?.stop(),
        () => b?.stop(),
        () => c?.stop(),
        () => redis?.kill(),
        () => upstream?.close(),
        () => relay?.close(),
        () => db?.drop(),
        () =>
          new Promise<void>((r) => {
            hook?.closeAllConnections();
            hook?.close(() => r());
          }),
      ];
      for (const step of steps) {
        await Promise.resolve()
          .then(step)
          .catch(() => undefined);
      }
    });

    /** A signed POST (for the public URL) sent to `node`: held by an approve rule. */
    async function post(node: TestNode, path: string): Promise<Answer> {
      const body = JSON.stringify({ path });
      const headers = await signRequest({
        method: 'POST',
        url: `${publicUrl}${path}`,
        lease: agent.lease,
        key: agent.key,
        intent: `ship ${path}`,
        headers: { 'content-type': 'application/json' },
        body,
      });
      return exchange(`${node.proxyUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    }

    async function admin<T>(node: TestNode, method: string, path: string, token?: string) {
      const r = await exchange(`${node.adminUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token ?? node.operatorToken}` },
      });
      let json: unknown;
      try {
        json = JSON.parse(r.body);
      } catch {
        json = undefined;
      }
      return { ...r, json: json as T };
    }

    const list = async (node: TestNode) =>
      (await admin<{ approvals: Pending[] }>(node, 'GET', '/v1/approvals')).json.approvals;

    /** Waits until `node` lists exactly the held requests of `paths` (by path). */
    async function listed(node: TestNode, paths: string[]): Promise<Map<string, Pending>> {
      let held: Pending[] = [];
      await eventually(async () => {
        held = await list(node);
        expect(held.map((p) => `/deploy${p.path}`).sort()).toEqual([...paths].sort());
      });
      return new Map(held.map((p) => [`/deploy${p.path}`, p]));
    }

    const forwarded = (path: string) =>
      upstream.requests.filter((r) => `/deploy${r.url}` === path).length;

    it("every node lists every node's held requests; a decision on another node is applied once by the holder", async () => {
      upstream.reset();
      const paths = {
        a: ['/deploy/releases/a-0', '/deploy/releases/a-1'],
        b: ['/deploy/releases/b-0', '/deploy/releases/b-1'],
        c: ['/deploy/releases/c-0'],
      };
      const calls = new Map<string, Promise<Answer>>();
      for (const [key, node] of [
        ['a', a],
        ['b', b],
        ['c', c],
      ] as const) {
        for (const p of paths[key]) calls.set(p, post(node, p));
      }
      const all = [...paths.a, ...paths.b, ...paths.c];
      const held = await listed(a, all);
      // The same list, oldest first, from every node.
      for (const node of [a, b, c]) {
        const l = await list(node);
        expect(l.map((p) => p.id).sort()).toEqual([...held.values()].map((p) => p.id).sort());
        expect(l.map((p) => p.created_at)).toEqual(l.map((p) => p.created_at).sort());
      }
      // The CLI, pointed at another node (a joined node has no token file: the env names it).
      const cli = await c.cli(['approval', 'list', '--json'], {
        env: { NEXUS_OPERATOR_TOKEN: c.operatorToken },
      });
      expect((JSON.parse(cli.stdout) as Pending[]).length).toBe(all.length);
      const id = (path: string) => (held.get(path) as Pending).id;

      // Approve on a node that does not hold it: the holder forwards it, once.
      const started = Date.now();
      const approved = await admin<{ state: string }>(
        a,
        'POST',
        `/v1/approvals/${id('/deploy/releases/b-0')}/approve`,
      );
      expect([approved.status, approved.json.state]).toEqual([200, 'approved']);
      const answer = await calls.get('/deploy/releases/b-0');
      measured.push({ what: `${name}: approve on a -> forwarded by b`, ms: Date.now() - started });
      expect(answer?.status).toBe(200);
      expect(forwarded('/deploy/releases/b-0')).toBe(1);

      // Deny on another node: refused, never forwarded.
      const denied = await admin(b, 'POST', `/v1/approvals/${id('/deploy/releases/a-0')}/deny`);
      expect(denied.status).toBe(200);
      expect(await calls.get('/deploy/releases/a-0')).toMatchObject({
        status: 403,
        code: 'approval_denied',
      });
      expect(forwarded('/deploy/releases/a-0')).toBe(0);

      // A second decision, on any node, and an unknown id: not_found.
      for (const node of [a, b, c]) {
        for (const [path, verb] of [
          ['/deploy/releases/b-0', 'approve'],
          ['/deploy/releases/a-0', 'approve'],
        ] as const) {
          const again = await admin(node, 'POST', `/v1/approvals/${id(path)}/${verb}`);
          expect([again.status, again.code]).toEqual([404, 'not_found']);
        }
        const unknown = await admin(node, 'POST', '/v1/approvals/apr_nosuchid0000/approve');
        expect([unknown.status, unknown.code]).toEqual([404, 'not_found']);
      }

      // Concurrent decisions on three nodes: one is applied, the others are not_found.
      const race = await Promise.all(
        [a, b, c].map((node, i) =>
          admin(
            node,
            'POST',
            `/v1/approvals/${id('/deploy/releases/b-1')}/${i === 1 ? 'deny' : 'approve'}`,
          ),
        ),
      );
      expect(race.filter((r) => r.status === 200)).toHaveLength(1);
      expect(race.filter((r) => r.status === 404 && r.code === 'not_found')).toHaveLength(2);
      const raced = await calls.get('/deploy/releases/b-1');
      const winner = race.findIndex((r) => r.status === 200);
      expect(raced?.status).toBe(winner === 1 ? 403 : 200);
      expect(forwarded('/deploy/releases/b-1')).toBe(winner === 1 ? 0 : 1);

      // The rest: c's approved from b, a-1 denied from c.
      expect(
        (await admin(b, 'POST', `/v1/approvals/${id('/deploy/releases/c-0')}/approve`)).status,
      ).toBe(200);
      expect(
        (await admin(c, 'POST', `/v1/approvals/${id('/deploy/releases/a-1')}/deny`)).status,
      ).toBe(200);
      expect((await calls.get('/deploy/releases/c-0'))?.status).toBe(200);
      expect((await calls.get('/deploy/releases/a-1'))?.code).toBe('approval_denied');
      expect(await list(b)).toEqual([]);
      // Each approved request reached the upstream exactly once, nothing else did.
      const expected = [
        '/releases/b-0',
        '/releases/c-0',
        ...(winner === 1 ? [] : ['/releases/b-1']),
      ];
      expect(upstream.requests.map((r) => r.url).sort()).toEqual(expected.sort());

      // The holder audited the decision with the approver (its own chain).
      const requestId = (held.get('/deploy/releases/b-0') as Pending).request_id;
      await eventually(async () => {
        const r = await b.admin<{
          records: { approval?: { state: string; approver?: unknown } }[];
        }>('GET', `/v1/audit?request_id=${requestId}&order=asc`);
        expect(r.body.records.map((x) => x.approval?.state)).toContain('approved');
      });
    }, 90_000);

    it("a rule's approvers are checked on any node; a webhook's signed callback to another node decides once", async () => {
      upstream.reset();
      const prod = post(c, '/deploy/prod/p-0');
      const later = post(b, '/deploy/later/w-0');
      const held = await listed(a, ['/deploy/prod/p-0', '/deploy/later/w-0']);
      const prodId = (held.get('/deploy/prod/p-0') as Pending).id;
      const laterId = (held.get('/deploy/later/w-0') as Pending).id;
      // The operator token is not the release manager: forbidden, on any node.
      for (const node of [a, b]) {
        const r = await admin(node, 'POST', `/v1/approvals/${prodId}/approve`);
        expect([r.status, r.code]).toEqual([403, 'forbidden']);
      }
      // An operator decision is not a webhook's: a callback for a rule without one is not_found.
      const callback = (node: TestNode, id: string, decision: string) => {
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
      const noHook = await callback(a, prodId, 'approve');
      expect([noHook.status, noHook.code]).toEqual([404, 'not_found']);
      const bad = await exchange(`${a.adminUrl}/v1/approvals/${laterId}/webhook`, {
        method: 'POST',
        headers: {
          'nexus-webhook-timestamp': String(Math.floor(Date.now() / 1000)),
          'nexus-webhook-signature': 'sha256=00',
        },
        body: JSON.stringify({ id: laterId, decision: 'approve', approver: 'mallory' }),
      });
      expect([bad.status, bad.code]).toEqual([401, 'unauthorized']);
      const ok = await callback(a, laterId, 'approve');
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({
        state: 'approved',
        approver: { name: 'alice', token_id: 'webhook:hooked' },
      });
      const again = await callback(c, laterId, 'approve');
      expect([again.status, again.code]).toEqual([404, 'not_found']);
      expect((await later).status).toBe(200);
      expect(forwarded('/deploy/later/w-0')).toBe(1);
      // Ends the prod request: denied by an operator (deny is checked against approvers too).
      const deny = await admin(b, 'POST', `/v1/approvals/${prodId}/deny`);
      expect([deny.status, deny.code]).toEqual([403, 'forbidden']);
      expect(await list(a)).toHaveLength(1);
      // p-0 stays held on c: the next tests list it, c's stop ends it.
      void prod;
    }, 60_000);

    it('times out as on one node: 408 approval_timeout, gone from every list', async () => {
      upstream.reset();
      const call = post(b, '/deploy/short/t-0');
      const held = await listed(c, ['/deploy/prod/p-0', '/deploy/short/t-0']);
      const answer = await call;
      expect([answer.status, answer.code]).toEqual([408, 'approval_timeout']);
      const id = (held.get('/deploy/short/t-0') as Pending).id;
      const late = await admin(a, 'POST', `/v1/approvals/${id}/approve`);
      expect([late.status, late.code]).toEqual([404, 'not_found']);
      expect((await list(a)).map((p) => p.id)).not.toContain(id);
      expect(forwarded('/deploy/short/t-0')).toBe(0);
    }, 30_000);

    it('fails closed with the database cut: decisions answer 503 store_unavailable, nothing is forwarded', async () => {
      upstream.reset();
      const call = post(a, '/deploy/releases/cut-0');
      const held = await listed(b, ['/deploy/prod/p-0', '/deploy/releases/cut-0']);
      const id = (held.get('/deploy/releases/cut-0') as Pending).id;
      relay.cut();
      try {
        for (const node of [a, b]) {
          const r = await admin(node, 'POST', `/v1/approvals/${id}/approve`);
          expect([r.status, r.code]).toEqual([503, 'store_unavailable']);
          const l = await admin(node, 'GET', '/v1/approvals');
          expect([l.status, l.code]).toEqual([503, 'store_unavailable']);
        }
        // A new request needing approval is not held without the store: 503, not forwarded.
        const refused = await post(c, '/deploy/releases/cut-1');
        expect(refused.status).toBe(503);
      } finally {
        relay.restore();
      }
      expect(forwarded('/deploy/releases/cut-0')).toBe(0);
      expect(forwarded('/deploy/releases/cut-1')).toBe(0);
      // Back: the held request is still there, and decided once.
      await eventually(async () => {
        const r = await admin(b, 'POST', `/v1/approvals/${id}/approve`);
        expect(r.status).toBe(200);
      });
      expect((await call).status).toBe(200);
      expect(forwarded('/deploy/releases/cut-0')).toBe(1);
    }, 60_000);

    it('SIGTERM of a holder ends its requests (approval_timeout) and unlists them; kill -9 of a holder unlists them within seconds', async () => {
      upstream.reset();
      const onC = post(c, '/deploy/releases/stop-0');
      const onB = post(b, '/deploy/releases/kill-0');
      const held = await listed(a, [
        '/deploy/prod/p-0',
        '/deploy/releases/stop-0',
        '/deploy/releases/kill-0',
      ]);
      await c.stop();
      expect(await onC).toMatchObject({ status: 408, code: 'approval_timeout' });
      const stopId = (held.get('/deploy/releases/stop-0') as Pending).id;
      expect((await list(a)).map((p) => p.id)).not.toContain(stopId);
      const gone = await admin(a, 'POST', `/v1/approvals/${stopId}/approve`);
      expect([gone.status, gone.code]).toEqual([404, 'not_found']);

      const killed = Date.now();
      b.process.kill('SIGKILL');
      expect((await onB).status).toBe(0); // the connection broke with the node
      const killId = (held.get('/deploy/releases/kill-0') as Pending).id;
      await eventually(async () => {
        expect((await list(a)).map((p) => p.id)).not.toContain(killId);
      }, 30_000);
      measured.push({ what: `${name}: kill -9 holder -> unlisted`, ms: Date.now() - killed });
      const dead = await admin(a, 'POST', `/v1/approvals/${killId}/approve`);
      expect([dead.status, dead.code]).toEqual([404, 'not_found']);
      expect(forwarded('/deploy/releases/stop-0') + forwarded('/deploy/releases/kill-0')).toBe(0);
    }, 60_000);
  });
}

suite('three nodes on PostgreSQL and Redis: held approvals (issue 13)', true);
suite('three nodes on PostgreSQL without Redis (NOTIFY): held approvals (issue 13)', false);
