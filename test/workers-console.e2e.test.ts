/**
 * `nexus up --workers 2` and the web console's people, and the node's status (issue 13):
 * real processes on one SQLite store, a real OpenID Provider (`oidc-provider` on loopback).
 * Every request of the scripted browser is a connection of its own, so consecutive
 * requests reach the workers in turn.
 *
 * - An OIDC login started on one worker completes on the other (the primary holds the
 *   logins in progress).
 * - A person's token is known to every worker (the primary holds it): many console calls,
 *   which reach the admin API of both workers, all succeed; they still do after kill -9 of
 *   the worker that logged the person in (no worker left has it in its own memory).
 * - A logout ends the session and its token on both workers.
 * - `GET /v1/status` answers for the node whichever worker serves it: both workers listed
 *   with their pids, the audit backlog summed; a worker that does not answer (SIGSTOP) is
 *   listed `unreachable` and the status is `degraded`.
 */
import { execFileSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import { CONSOLE_CLIENT, startPeopleIdp, type PeopleIdp } from './helpers/oidc-people.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

interface Answer {
  status: number;
  url: string;
  body: string;
}

/** One request on a connection of its own. */
function once(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer & { setCookies: string[]; location: string | undefined }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: init.method ?? 'GET',
        headers: init.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            url,
            body,
            setCookies: res.headers['set-cookie'] ?? [],
            location: res.headers.location,
          }),
        );
      },
    );
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
    req.end(init.body);
  });
}

/** A scripted browser whose every request is a new connection (cookies shared by all hosts). */
class FreshBrowser {
  readonly jar = new Map<string, string>();

  async go(
    url: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    let method = init.method ?? 'GET';
    let body = init.form === undefined ? undefined : new URLSearchParams(init.form).toString();
    for (let i = 0; i < 20; i++) {
      const res = await once(url, {
        method,
        body,
        headers: {
          cookie: [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '),
          ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
          ...init.headers,
        },
      });
      for (const c of res.setCookies) {
        const pair = c.split(';')[0] as string;
        const eq = pair.indexOf('=');
        const [name, value] = [pair.slice(0, eq), pair.slice(eq + 1)];
        if (value === '' || /max-age=0|expires=Thu, 01 Jan 1970/i.test(c)) this.jar.delete(name);
        else this.jar.set(name, value);
      }
      if (res.status >= 300 && res.status < 400 && res.location !== undefined) {
        url = new URL(res.location, url).href;
        method = 'GET';
        body = undefined;
        continue;
      }
      return { status: res.status, url, body: res.body };
    }
    throw new Error('too many redirects');
  }

  /** Logs in to the console at `adminUrl` as `account` through the provider's pages. */
  async login(adminUrl: string, account: string): Promise<Answer> {
    let r = await this.go(`${adminUrl}/console/oidc/login`);
    for (let i = 0; i < 4 && r.url.includes('/interaction/'); i++) {
      const action = /action="([^"]+)"/.exec(r.body)?.[1];
      if (action === undefined) throw new Error(`no form at ${r.url}: ${r.body}`);
      r = await this.go(new URL(action, r.url).href, {
        method: 'POST',
        form: action.endsWith('/login') ? { login: account } : {},
      });
    }
    return r;
  }
}

interface WorkerEntry {
  id: number;
  pid: number | null;
  status: string;
  restarts: number;
  started_at: string | null;
  uptime_seconds: number | null;
  policy_hash: string | null;
  audit: { pending_records: number; lag_seconds: number } | null;
  approvals_pending: number | null;
}

interface NodeStatus {
  status: string;
  node: { started_at: string; uptime_seconds: number; policy_hash: string; store: string };
  agents: { total: number };
  audit: { head_seq: number; pending_records: number; lag_seconds: number };
  approvals_pending: number;
  workers?: WorkerEntry[];
}

/** The `console login` log lines: which worker logged whom in. */
function logins(node: TestNode): { worker: number; pid: number; person: string }[] {
  const out: { worker: number; pid: number; person: string }[] = [];
  for (const line of node.output().split('\n')) {
    if (!line.includes('"console login"')) continue;
    try {
      const j = JSON.parse(line) as { worker?: number; pid?: number; person?: string };
      if (j.worker !== undefined && j.pid !== undefined && j.person !== undefined)
        out.push({ worker: j.worker, pid: j.pid, person: j.person });
    } catch {
      // not a log line
    }
  }
  return out;
}

async function waitFor(what: string, check: () => boolean, node: TestNode): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} not seen:\n${node.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('nexus up --workers 2: console people and the node status (issue 13)', () => {
  let idp: PeopleIdp;
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    idp = await startPeopleIdp();
    const adminPort = await freePort();
    const redirectUri = `http://127.0.0.1:${adminPort}/console/oidc/callback`;
    await idp.setup(redirectUri, {
      bob: ['nexus-operators'],
      alice: ['nexus-viewers'],
    });
    upstream = await startUpstream();
    node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }],
      overrides: {
        log: { level: 'info' },
        admin: {
          listen: `127.0.0.1:${adminPort}`,
          console: {
            oidc: {
              issuer: idp.issuer,
              client_id: CONSOLE_CLIENT.client_id,
              client_secret_credential: 'console-oidc',
              redirect_uri: redirectUri,
              scopes: ['openid', 'email', 'groups'],
              roles_claim: 'groups',
              roles: { viewer: ['nexus-viewers'], operator: ['nexus-operators'], admin: [] },
            },
          },
        },
      },
      upArgs: ['--workers', '2'],
    });
    await node.setCredential('console-oidc', { client_secret: CONSOLE_CLIENT.client_secret });
  }, 60_000);

  afterAll(async () => {
    await node?.stop().catch(() => undefined);
    await upstream?.close();
    await idp?.close();
  });

  /** `GET /v1/status` with the operator token, on a connection of its own. */
  const status = async (): Promise<{ status: number; body: NodeStatus }> => {
    const r = await once(`${node.adminUrl}/v1/status`, {
      headers: { authorization: `Bearer ${node.operatorToken}` },
    });
    return { status: r.status, body: JSON.parse(r.body) as NodeStatus };
  };

  /** A console call as the page makes it: same origin, the session cookie, its CSRF token. */
  const consoleCall = async (b: FreshBrowser, method: string, path: string) => {
    const cookie = `nexus_console=${b.jar.get('nexus_console') ?? ''}`;
    const s = await once(`${node.adminUrl}/console/session`, { headers: { cookie } });
    const csrf = s.status === 200 ? (JSON.parse(s.body) as { csrf_token: string }).csrf_token : '';
    const r = await once(`${node.adminUrl}/console/api${path}`, {
      method,
      headers: { cookie, origin: node.adminUrl, 'x-nexus-csrf': csrf },
    });
    return { session: s.status, status: r.status, body: r.body };
  };

  it('OIDC logins complete whichever worker the callback reaches, and the console works on both workers', async () => {
    // Each login's start and callback are consecutive connections: they reach the two
    // workers in turn, so the callback lands on the worker that did not start the flow.
    // One more connection before every other login: the callbacks reach both workers.
    const people = [];
    for (let i = 0; i < 4; i++) {
      if (i % 2 === 1) expect((await once(`${node.adminUrl}/v1/health`)).status).toBe(200);
      const b = new FreshBrowser();
      const r = await b.login(node.adminUrl, 'bob');
      expect(r.status, r.body).toBe(200);
      expect(new URL(r.url).pathname).toBe('/console/oidc/callback');
      expect(b.jar.get('nexus_console')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      people.push(b);
    }
    await waitFor('4 console logins', () => logins(node).length >= 4, node);
    // Both workers logged people in (and so minted person tokens).
    expect(new Set(logins(node).map((l) => l.worker))).toEqual(new Set([1, 2]));

    // Many admin calls through each session: both workers serve the console, and each
    // worker's admin API gets calls with tokens the other worker minted.
    for (const b of people) {
      for (let i = 0; i < 6; i++) {
        const agents = await consoleCall(b, 'GET', '/v1/agents');
        expect(agents.status, agents.body).toBe(200);
        expect(agents.session).toBe(200);
      }
      const disabled = await consoleCall(b, 'POST', '/v1/agents/bot/disable');
      expect(disabled.status, disabled.body).toBe(200);
      const enabled = await consoleCall(b, 'POST', '/v1/agents/bot/enable');
      expect(enabled.status, enabled.body).toBe(200);
    }
    // The audit names the person for each action, whichever worker recorded it.
    const audit = await node.admin<{
      records: { action?: string; actor?: { type: string; name: string } }[];
    }>('GET', '/v1/audit?kind=authority');
    const byBob = audit.body.records.filter(
      (r) => r.action === 'agent.disable' && r.actor?.name === 'bob@example.org',
    );
    expect(byBob).toHaveLength(4);
    expect(byBob.every((r) => r.actor?.type === 'person')).toBe(true);
  }, 60_000);

  it("a person's session outlives kill -9 of the worker that logged them in; logout ends it on both workers", async () => {
    const b = new FreshBrowser();
    const before = logins(node).length;
    expect((await b.login(node.adminUrl, 'alice')).status).toBe(200);
    await waitFor('the login line', () => logins(node).length > before, node);
    const minted = logins(node).at(-1) as { worker: number; pid: number; person: string };
    expect(minted.person).toBe('alice@example.org');
    expect((await consoleCall(b, 'GET', '/v1/leases')).status).toBe(200);

    // No worker left holds the token in its own memory: the other never did, the
    // restarted one is a new process.
    process.kill(minted.pid, 'SIGKILL');
    await waitFor(
      `worker ${minted.worker} restarted`,
      () => node.output().includes(`worker ${minted.worker} listening again`),
      node,
    );
    for (let i = 0; i < 8; i++) {
      const r = await consoleCall(b, 'GET', '/v1/leases');
      expect(r.status, r.body).toBe(200);
    }
    // A viewer still cannot act: the role travels with the token.
    const refused = await consoleCall(b, 'POST', '/v1/agents/bot/disable');
    expect(refused.status).toBe(403);
    expect((JSON.parse(refused.body) as { code: string }).code).toBe('role_forbidden');

    const cookie = `nexus_console=${b.jar.get('nexus_console') ?? ''}`;
    const s = await once(`${node.adminUrl}/console/session`, { headers: { cookie } });
    const csrf = (JSON.parse(s.body) as { csrf_token: string }).csrf_token;
    const out = await once(`${node.adminUrl}/console/logout`, {
      method: 'POST',
      headers: { cookie, origin: node.adminUrl, 'x-nexus-csrf': csrf },
    });
    expect(out.status).toBe(204);
    for (let i = 0; i < 6; i++) {
      const r = await consoleCall(b, 'GET', '/v1/leases');
      expect(r.session).toBe(401);
      expect(r.status).toBe(401);
    }

    // The status counts the restart.
    const st = await status();
    const entry = st.body.workers?.find((w) => w.id === minted.worker);
    expect(entry).toMatchObject({ status: 'ok', restarts: 1 });
    expect(entry?.pid).not.toBe(minted.pid);
  }, 60_000);

  it('GET /v1/status answers for the node every time, whichever worker serves it', async () => {
    const pids = execFileSync('ps', ['-o', 'pid=', '--ppid', String(node.process.pid)], {
      encoding: 'utf8',
    })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0)
      .sort();
    expect(pids).toHaveLength(2);
    const first = (await status()).body;
    for (let i = 0; i < 10; i++) {
      const { status: code, body } = await status();
      expect(code).toBe(200);
      expect(body.status).toBe('ok');
      const workers = body.workers ?? [];
      expect(workers.map((w) => w.id)).toEqual([1, 2]);
      expect(workers.map((w) => w.pid).sort()).toEqual(pids);
      expect(
        workers.every((w) => w.status === 'ok' && w.policy_hash === body.node.policy_hash),
      ).toBe(true);
      // The node's start is the primary's: the same in every answer, before any worker's.
      expect(body.node.started_at).toBe(first.node.started_at);
      for (const w of workers)
        expect(Date.parse(w.started_at!)).toBeGreaterThanOrEqual(Date.parse(body.node.started_at));
      expect(body.audit.pending_records).toBe(
        workers.reduce((n, w) => n + (w.audit?.pending_records ?? 0), 0),
      );
      expect(body.approvals_pending).toBe(0);
      expect(body.agents).toEqual(first.agents);
    }
    // `nexus status` prints the workers.
    const cli = await node.cli(['status']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('workers:  2');
    expect(cli.stdout).toMatch(/^ {2}1: pid \d+, up /m);
  });

  it('a worker that does not answer is listed unreachable, and the status is degraded', async () => {
    const { body } = await status();
    const victim = (body.workers ?? []).find((w) => w.id === 2)?.pid;
    if (victim === undefined || victim === null) throw new Error('no worker 2');
    process.kill(victim, 'SIGSTOP');
    try {
      // Two connections: one reaches worker 1 (it answers, after the 3 s the primary waits
      // for worker 2), the other waits in stopped worker 2 until it continues.
      const both = [status(), status()];
      const first = await Promise.race(both);
      expect(first.status).toBe(200);
      expect(first.body.status).toBe('degraded');
      expect(first.body.workers?.map((w) => [w.id, w.status])).toEqual([
        [1, 'ok'],
        [2, 'unreachable'],
      ]);
      expect(first.body.workers?.[1]).toMatchObject({
        pid: victim,
        audit: null,
        uptime_seconds: null,
      });
      process.kill(victim, 'SIGCONT');
      const all = await Promise.all(both);
      expect(all.every((r) => r.status === 200)).toBe(true);
    } finally {
      process.kill(victim, 'SIGCONT');
    }
    expect((await status()).body.status).toBe('ok');
  }, 30_000);
});
