/**
 * `nexus up --workers 2` end to end (issue 13 "every core of one machine", issue 14 step
 * 4): real processes on one SQLite store. Both workers serve; a replayed signed request is
 * forwarded once whichever worker it lands on; a revoked lease is refused by every
 * worker; kill -9 of a worker: the primary starts it again and every request the upstream
 * received has a durable request record; `nexus audit verify` passes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { runCli, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

/** One request on a connection of its own (the primary hands connections out round-robin). */
function send(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; code: string | undefined }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: u.pathname, headers, agent: false },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          let code: string | undefined;
          if ((res.headers['content-type'] ?? '').includes('problem+json')) {
            code = (JSON.parse(body) as { code?: string }).code;
          }
          resolve({ status: res.statusCode ?? 0, code });
        });
      },
    );
    req.on('error', reject);
    // A connection caught by the kill -9 may never be answered.
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function signedGet(node: TestNode, agent: RawAgent, path: string) {
  const url = `${node.proxyUrl}${path}`;
  const headers = await signRequest({
    method: 'GET',
    url,
    lease: agent.lease,
    key: agent.key,
    intent: '',
  });
  return { url, headers };
}

/** The access-log lines of the workers: `{ worker, pid, path, status }`. */
function accessLines(node: TestNode): { worker: number; pid: number; path: string }[] {
  const lines: { worker: number; pid: number; path: string }[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.includes('"access"')) continue;
    try {
      const j = JSON.parse(line) as { worker?: number; pid?: number; access?: { path: string } };
      if (j.worker !== undefined && j.pid !== undefined && j.access !== undefined) {
        lines.push({ worker: j.worker, pid: j.pid, path: j.access.path });
      }
    } catch {
      // not a log line
    }
  }
  return lines;
}

/** Waits until `count` access lines match (the workers log asynchronously). */
async function accessOf(
  node: TestNode,
  match: (path: string) => boolean,
  count: number,
): Promise<{ worker: number; pid: number; path: string }[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const lines = accessLines(node).filter((l) => match(l.path));
    if (lines.length >= count || Date.now() > deadline) return lines;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function leaseId(agent: RawAgent): string {
  const payload = agent.lease.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { jti: string }).jti;
}

describe('nexus up --workers 2', () => {
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
      overrides: { log: { level: 'info', access: true } },
      upArgs: ['--workers', '2'],
    });
  }, 60_000);

  afterAll(async () => {
    await node?.stop().catch(() => undefined);
    await upstream?.close();
  });

  it('prints one listening line for the workers, and both workers serve requests', async () => {
    expect(node.output()).toContain('(2 workers)');
    const agent = await rawAgent(node, 'bot');
    for (let i = 0; i < 20; i++) {
      const { url, headers } = await signedGet(node, agent, `/echo/both-${i}`);
      expect((await send(url, headers)).status).toBe(200);
    }
    const served = await accessOf(node, (p) => p.startsWith('/both-'), 20);
    expect(served).toHaveLength(20);
    expect(new Set(served.map((l) => l.worker))).toEqual(new Set([1, 2]));
  });

  it('/metrics shows the whole process group, whichever worker is scraped', async () => {
    const agent = await rawAgent(node, 'bot');
    /** One scrape on a connection of its own (so the scrapes reach both workers). */
    const scrape = () =>
      new Promise<string>((resolve, reject) => {
        const u = new URL(`${node.adminUrl}/metrics`);
        const req = httpRequest(
          {
            host: u.hostname,
            port: u.port,
            path: u.pathname,
            headers: { authorization: `Bearer ${node.operatorToken}` },
            agent: false,
          },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () =>
              res.statusCode === 200
                ? resolve(body)
                : reject(new Error(`${res.statusCode} ${body}`)),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    const served = (text: string) => {
      const m = /^nexus_requests_total\{[^}]*service="echo"[^}]*code="ok"[^}]*\} (\d+)$/m.exec(
        text,
      );
      return m === null ? 0 : Number(m[1]);
    };
    const before = served(await scrape());
    for (let i = 0; i < 10; i++) {
      const { url, headers } = await signedGet(node, agent, `/echo/metrics-${i}`);
      expect((await send(url, headers)).status).toBe(200);
    }
    const lines = await accessOf(node, (p) => p.startsWith('/metrics-'), 10);
    expect(new Set(lines.map((l) => l.worker))).toEqual(new Set([1, 2]));
    // The count is made when a request has ended (just after its answer): polled.
    const deadline = Date.now() + 10_000;
    while (served(await scrape()) !== before + 10) {
      if (Date.now() > deadline) throw new Error(`not ${before + 10}: ${served(await scrape())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Every scrape, whichever worker answers it, counts both workers' requests.
    for (let i = 0; i < 6; i++) expect(served(await scrape())).toBe(before + 10);
    // The process metrics are the group's too: one CPU counter, not one per worker.
    const text = await scrape();
    expect(text.match(/^nexus_process_cpu_seconds_total /gm)).toHaveLength(1);
  });

  it('a replayed signed request is forwarded exactly once, whichever worker it reaches', async () => {
    const agent = await rawAgent(node, 'bot');
    const { url, headers } = await signedGet(node, agent, '/echo/replay-once');
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await send(url, headers));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.code === 'replay_detected')).toHaveLength(7);
    expect(upstream.requests.filter((r) => r.url === '/replay-once')).toHaveLength(1);
    // Both workers saw the replay (8 connections, round-robin).
    const seen = await accessOf(node, (p) => p === '/replay-once', 8);
    expect(new Set(seen.map((l) => l.worker))).toEqual(new Set([1, 2]));
    // Sent at once, to both workers: still one each. 10 signed requests, each sent 12
    // times concurrently (120 connections, round-robin over the two workers): the pairs
    // race in both workers' audit transactions, not in one cache.
    const signed = await Promise.all(
      Array.from({ length: 10 }, (_x, i) => signedGet(node, agent, `/echo/replay-burst-${i}`)),
    );
    const burst = await Promise.all(
      signed.flatMap((r) => Array.from({ length: 12 }, () => send(r.url, r.headers))),
    );
    expect(burst.filter((r) => r.status === 200)).toHaveLength(10);
    expect(burst.filter((r) => r.code === 'replay_detected')).toHaveLength(110);
    for (let i = 0; i < 10; i++) {
      expect(upstream.requests.filter((r) => r.url === `/replay-burst-${i}`)).toHaveLength(1);
    }
    const raced = await accessOf(node, (p) => p.startsWith('/replay-burst-'), 120);
    expect(new Set(raced.map((l) => l.worker))).toEqual(new Set([1, 2]));
  });

  it('kill -9 of the worker that forwarded a request: its replay is refused by the other worker, and by the restarted one', async () => {
    const agent = await rawAgent(node, 'bot');
    // A request served by worker 1 (worker 2 is the victim of the next test).
    let served: { url: string; headers: Record<string, string>; pid: number } | undefined;
    for (let i = 0; i < 20 && served === undefined; i++) {
      const r = await signedGet(node, agent, `/echo/crash-replay-${i}`);
      expect((await send(r.url, r.headers)).status).toBe(200);
      const [line] = await accessOf(node, (p) => p === `/crash-replay-${i}`, 1);
      if (line?.worker === 1) served = { ...r, pid: line.pid };
    }
    if (served === undefined) throw new Error('no request reached worker 1');
    const path = new URL(served.url).pathname.replace('/echo', '');
    process.kill(served.pid, 'SIGKILL');
    // Once the primary saw the exit, it hands connections to worker 2 alone (before, one
    // could still go to the dead worker and never be answered).
    const seen = Date.now() + 20_000;
    while (!node.output().includes('worker 1 exited (SIGKILL)')) {
      if (Date.now() > seen) throw new Error(`worker 1 exit not seen:\n${node.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Only worker 2 is left: its cache never saw the request, the store's record refuses it.
    for (let i = 0; i < 4; i++) {
      expect((await send(served.url, served.headers)).code).toBe('replay_detected');
    }
    const deadline = Date.now() + 20_000;
    while (!node.output().includes('worker 1 listening again')) {
      if (Date.now() > deadline) throw new Error(`worker 1 not restarted:\n${node.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Both workers again, the new worker 1 with an empty cache.
    for (let i = 0; i < 6; i++) {
      expect((await send(served.url, served.headers)).code).toBe('replay_detected');
    }
    expect(upstream.requests.filter((r) => r.url === path)).toHaveLength(1);
    const refusedBy = await accessOf(node, (p) => p === path, 11);
    expect(refusedBy.some((l) => l.worker === 1 && l.pid !== served.pid)).toBe(true);
  }, 60_000);

  it('a lease revoked through the admin API is refused by every worker', async () => {
    const agent = await rawAgent(node, 'bot');
    const first = await signedGet(node, agent, '/echo/before-revoke');
    expect((await send(first.url, first.headers)).status).toBe(200);
    const revoked = await node.admin('POST', `/v1/leases/${leaseId(agent)}/revoke`);
    expect(revoked.status).toBe(200);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const batch = [];
      for (let i = 0; i < 10; i++) {
        const r = await signedGet(node, agent, `/echo/after-revoke-${i}`);
        batch.push(await send(r.url, r.headers));
      }
      if (batch.every((r) => r.code === 'lease_revoked')) break;
      if (Date.now() > deadline) {
        throw new Error(`still served: ${JSON.stringify(batch.map((r) => r.code ?? r.status))}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await accessOf(node, (p) => p.startsWith('/after-revoke-'), 10);
    expect(new Set(after.map((l) => l.worker))).toEqual(new Set([1, 2]));
  });

  it('an agent disabled through the admin API is refused by every worker, and enabled again', async () => {
    const agent = await rawAgent(node, 'bot');
    const batch = async (tag: string) => {
      const out = [];
      for (let i = 0; i < 10; i++) {
        const r = await signedGet(node, agent, `/echo/${tag}-${i}`);
        out.push(await send(r.url, r.headers));
      }
      return out;
    };
    expect((await node.admin('POST', '/v1/agents/bot/disable')).status).toBe(200);
    const deadline = Date.now() + 10_000;
    let last = await batch('disabled');
    while (!last.every((r) => r.status === 403 || r.status === 401)) {
      if (Date.now() > deadline) throw new Error(`still served: ${JSON.stringify(last)}`);
      last = await batch('disabled');
    }
    const codes = new Set(last.map((r) => r.code));
    expect(codes.size).toBe(1);
    expect((await node.admin('POST', '/v1/agents/bot/enable')).status).toBe(200);
    // The disable revoked the agent's leases; a new lease is served by every worker.
    const fresh = await rawAgent(node, 'bot');
    // Polled: the other worker learns of the enable through the primary, a moment later.
    const until = Date.now() + 10_000;
    let round = 0;
    for (;;) {
      const served = [];
      for (let i = 0; i < 10; i++) {
        const r = await signedGet(node, fresh, `/echo/enabled-${round}-${i}`);
        served.push((await send(r.url, r.headers)).status);
      }
      if (served.every((st) => st === 200)) break;
      if (Date.now() > until) throw new Error(`not served after enable: ${served.join(',')}`);
      round++;
    }
    const lines = await accessOf(node, (p) => p.startsWith(`/enabled-${round}-`), 10);
    expect(new Set(lines.map((l) => l.worker))).toEqual(new Set([1, 2]));
  });

  it('a console login on one worker is valid on every worker; a logout ends it on all', async () => {
    /** A console request on a connection of its own, as the browser sends it. */
    const con = (
      path: string,
      init: { method?: string; cookie?: string; csrf?: string; body?: string } = {},
    ) =>
      new Promise<{ status: number; setCookie: string | undefined; body: string }>(
        (resolve, reject) => {
          const u = new URL(`${node.adminUrl}${path}`);
          const req = httpRequest(
            {
              host: u.hostname,
              port: u.port,
              path: u.pathname,
              method: init.method ?? 'GET',
              agent: false,
              headers: {
                origin: node.adminUrl,
                ...(init.cookie === undefined ? {} : { cookie: init.cookie }),
                ...(init.csrf === undefined ? {} : { 'x-nexus-csrf': init.csrf }),
                ...(init.body === undefined
                  ? {}
                  : { 'content-type': 'application/x-www-form-urlencoded' }),
              },
            },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () =>
                resolve({
                  status: res.statusCode ?? 0,
                  setCookie: res.headers['set-cookie']?.[0],
                  body,
                }),
              );
            },
          );
          req.on('error', reject);
          req.end(init.body);
        },
      );
    const login = await con('/console/login', {
      method: 'POST',
      body: `token=${encodeURIComponent(node.operatorToken)}`,
    });
    expect(login.status).toBe(303);
    const cookie = login.setCookie!.split(';')[0]!;
    // Consecutive connections go to the workers in turn: both answer with the session.
    const csrfs = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const s = await con('/console/session', { cookie });
      expect(s.status).toBe(200);
      csrfs.add((JSON.parse(s.body) as { csrf_token: string }).csrf_token);
      const agents = await con('/console/api/v1/agents', { cookie });
      expect(agents.status).toBe(200);
    }
    // One session, one CSRF token, whichever worker answered.
    expect(csrfs.size).toBe(1);
    const [csrf] = [...csrfs];
    expect((await con('/console/logout', { method: 'POST', cookie, csrf })).status).toBe(204);
    for (let i = 0; i < 6; i++) {
      expect((await con('/console/session', { cookie })).status).toBe(401);
    }
  });

  it('kill -9 of a worker: the primary starts it again, and every forwarded request is audited', async () => {
    const agent = await rawAgent(node, 'bot');
    const victim = accessLines(node).find((l) => l.worker === 2)!.pid;
    let stop = false;
    let sent = 0;
    const load = (async () => {
      while (!stop) {
        const r = await signedGet(node, agent, `/echo/load-${sent++}`);
        await send(r.url, r.headers).catch(() => undefined);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    process.kill(victim, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    while (!node.output().includes('worker 2 listening again')) {
      if (Date.now() > deadline) throw new Error(`worker 2 not restarted:\n${node.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(node.output()).toContain('worker 2 exited (SIGKILL); starting it again');
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    // The new worker 2 serves.
    for (let i = 0; i < 6; i++) {
      const r = await signedGet(node, agent, `/echo/restarted-${i}`);
      expect((await send(r.url, r.headers)).status).toBe(200);
    }
    const restarted = await accessOf(node, (p) => p.startsWith('/restarted-'), 6);
    expect(restarted.some((l) => l.worker === 2 && l.pid !== victim)).toBe(true);

    const forwarded = upstream.requests.map((r) => r.url).filter((u) => u.startsWith('/load-'));
    expect(forwarded.length).toBeGreaterThan(0);
    const audit = await node.admin<{ records: { kind: string; path?: string }[] }>(
      'GET',
      '/v1/audit?kind=request&service=echo&limit=100000',
    );
    const audited = new Set(audit.body.records.map((r) => r.path));
    const missing = forwarded.filter((path) => !audited.has(path));
    expect(missing).toEqual([]);
  }, 60_000);

  it('stops every worker on SIGTERM, and audit verify passes', async () => {
    expect(await node.stop()).toBe(0);
    expect(node.output()).toContain('Nexus stopped.');
    const verify = await runCli(['audit', 'verify', '--json', '--config', node.configPath], {
      cwd: node.dir,
    });
    const report = JSON.parse(verify.stdout) as { ok: boolean; count: number };
    expect(report.ok).toBe(true);
    expect(report.count).toBeGreaterThan(40);
  });
});

describe('nexus up --workers: configuration and hand-over', () => {
  it('refuses limits without redis, with a clear startup error', async () => {
    const upstream = await startUpstream();
    const options = {
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
      overrides: { limits: [{ id: 'per-agent', requests: { max: 10, window: '1m' } }] },
      upArgs: ['--workers', '2'],
    };
    try {
      const error = await startNode(options).then(
        (n) => n.stop().then(() => undefined),
        (e: Error) => e.message,
      );
      expect(error).toContain('--workers 2 cannot run this configuration');
      expect(error).toContain('limits:');
    } finally {
      await upstream.close();
    }
  });

  it('a request accepted by a single process stays refused after the switch to workers, and a reload reaches every worker', async () => {
    const upstream = await startUpstream();
    const options: Parameters<typeof startNode>[0] = {
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }],
      overrides: { log: { level: 'info', access: true } },
    };
    const node = await startNode(options);
    try {
      const agent = await rawAgent(node, 'bot');
      const once = await signedGet(node, agent, '/echo/single-then-workers');
      expect((await send(once.url, once.headers)).status).toBe(200);
      options.upArgs = ['--workers', '2'];
      await node.stop();
      await node.restart();
      expect(node.output()).toContain('(2 workers)');
      for (let i = 0; i < 4; i++) {
        expect((await send(once.url, once.headers)).code).toBe('replay_detected');
      }
      expect(upstream.requests.filter((r) => r.url === '/single-then-workers')).toHaveLength(1);

      // A service added to nexus.yaml and reloaded through one worker's admin API is served
      // by every worker.
      const text = await readFile(node.configPath, 'utf8');
      const config = parse(text) as { services: Record<string, unknown> };
      config.services.second = { upstream: upstream.url, auth: { type: 'none' } };
      await writeFile(node.configPath, stringify(config));
      const reload = await node.admin<{ cluster?: { other_nodes: number; reports: unknown[] } }>(
        'POST',
        '/v1/config/reload',
      );
      expect(reload.status).toBe(200);
      expect(reload.body.cluster?.other_nodes).toBe(1);
      expect(reload.body.cluster?.reports).toHaveLength(1);
      for (let i = 0; i < 8; i++) {
        const r = await signedGet(node, agent, `/second/reloaded-${i}`);
        expect((await send(r.url, r.headers)).code).toBe('policy_denied');
      }
    } finally {
      await node.stop().catch(() => undefined);
      await upstream.close();
    }
  }, 60_000);
});

describe('nexus up --workers: the primary killed', () => {
  it('kill -9 of the primary: its workers stop by themselves, and the store can be served again', async () => {
    const upstream = await startUpstream();
    const node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
      upArgs: ['--workers', '2'],
    });
    try {
      const primary = node.process.pid!;
      const workers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(primary)], {
        encoding: 'utf8',
      })
        .split('\n')
        .map((l) => Number(l.trim()))
        .filter((n) => n > 0);
      expect(workers).toHaveLength(2);
      node.process.kill('SIGKILL');
      await new Promise((r) => node.process.once('exit', r));
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      const deadline = Date.now() + 20_000;
      while (workers.some(alive)) {
        if (Date.now() > deadline) throw new Error('workers outlived their primary');
        await new Promise((r) => setTimeout(r, 100));
      }
      // The node lock went with the primary; a new primary takes the store.
      await node.restart();
      const agent = await rawAgent(node, 'bot');
      const r = await signedGet(node, agent, '/echo/after-primary-crash');
      expect((await send(r.url, r.headers)).status).toBe(200);
    } finally {
      await node.stop().catch(() => undefined);
      await upstream.close();
    }
  }, 60_000);
});
