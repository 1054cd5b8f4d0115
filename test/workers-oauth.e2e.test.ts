/**
 * Issue 13, OAuth connections under `nexus up --workers 2` on one SQLite file: a real
 * authorization server (`oidc-provider`) that rotates refresh tokens and refuses (and
 * revokes the grant on) the reuse of a rotated one, a resource server that verifies its
 * JWT access tokens, and a relay in front of the token endpoint that records every token
 * request (and can hold one).
 *
 * Each request goes to the worker the test chooses: a connection is opened, the worker
 * that accepted it is read from /proc (the primary hands connections out in turn), and
 * the request is sent on it.
 *
 * - A connect started on one worker completes with its callback on the other, once.
 * - kill -9 of the worker that holds a connection's refresh lock (its token request held
 *   at the relay): the other worker, waiting for the lock, gets it at the exit and
 *   refreshes, long before the 30 s wait would end.
 * - Many concurrent requests through both workers with a due access token: every refresh
 *   token reaches the provider at most once, every request is served with a valid token,
 *   and a token due once is refreshed once for both workers.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import {
  startOidc,
  startResourceServer,
  WEB_CLIENT,
  type ResourceServer,
  type TestOidc,
} from './helpers/oidc.js';

// ---- which worker holds a socket (/proc) --------------------------------------------------

/** The pids of the primary's workers. */
function workerPids(node: TestNode): number[] {
  return execFileSync('ps', ['-o', 'pid=', '--ppid', String(node.process.pid)], {
    encoding: 'utf8',
  })
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => n > 0);
}

/** The inode of the loopback TCP socket whose ends are `localPort` and `remotePort`. */
function socketInode(localPort: number, remotePort: number): string | undefined {
  const hex = (p: number) => `:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(hex(localPort)) && f[2]?.endsWith(hex(remotePort)) && f[9] !== '0') {
      return f[9];
    }
  }
  return undefined;
}

/** The worker among `pids` that has the socket `localPort` -> `remotePort` open (polled). */
async function ownerOf(pids: number[], localPort: number, remotePort: number): Promise<number> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const inode = socketInode(localPort, remotePort);
    if (inode !== undefined) {
      for (const pid of pids) {
        let fds: string[] = [];
        try {
          fds = readdirSync(`/proc/${pid}/fd`);
        } catch {
          continue;
        }
        for (const fd of fds) {
          try {
            if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
          } catch {
            // closed meanwhile
          }
        }
      }
    }
    if (Date.now() > deadline) throw new Error(`no worker holds ${localPort}->${remotePort}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A connection to `port` accepted by worker `pid` (connections are handed out in turn). */
async function connectionTo(port: number, pids: number[], pid: number): Promise<Socket> {
  for (let i = 0; i < 100; i++) {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    if ((await ownerOf(pids, port, socket.localPort!)) === pid) return socket;
    socket.destroy();
  }
  throw new Error(`no connection reached worker ${pid}`);
}

interface Answer {
  status: number;
  body: string;
  code: string | undefined;
}

/** One HTTP request on `socket` (then closed). */
function over(
  socket: Socket,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: init.method ?? 'GET',
        headers: init.headers,
        // No agent: the request goes on `socket`, which it then closes.
        createConnection: () => socket,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          let code: string | undefined;
          if ((res.headers['content-type'] ?? '').includes('problem+json')) {
            code = (JSON.parse(body) as { code?: string }).code;
          }
          resolve({ status: res.statusCode ?? 0, body, code });
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(45_000, () => req.destroy(new Error('timeout')));
    req.end(init.body);
  });
}

// ---- a relay in front of the token endpoint ----------------------------------------------

interface TokenRelay {
  readonly url: string;
  readonly port: number;
  /** Token requests forwarded to the provider: grant type, refresh token, sender's port. */
  readonly forwarded: { grantType: string; refreshToken?: string; from: number }[];
  /** Holds the next token request (never forwarded); resolves with its sender's port. */
  holdNext(): Promise<number>;
  /** Token requests received, held ones included. */
  received(): number;
  close(): Promise<void>;
}

async function startTokenRelay(target: () => string): Promise<TokenRelay> {
  const forwarded: TokenRelay['forwarded'] = [];
  let received = 0;
  let hold: ((from: number) => void) | undefined;
  const server: Server = createServer((req: IncomingMessage, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
      const body = Buffer.concat(chunks).toString('utf8');
      received++;
      const from = req.socket.remotePort ?? 0;
      if (hold !== undefined) {
        // Held: never answered, never forwarded (the sender is killed meanwhile).
        const h = hold;
        hold = undefined;
        h(from);
        return;
      }
      const form = new URLSearchParams(body);
      forwarded.push({
        grantType: form.get('grant_type') ?? '',
        refreshToken: form.get('refresh_token') ?? undefined,
        from,
      });
      const headers: Record<string, string> = {};
      for (const h of ['content-type', 'authorization', 'accept']) {
        const v = req.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      const upstream = await fetch(target(), { method: 'POST', headers, body });
      res.writeHead(upstream.status, {
        'content-type': upstream.headers.get('content-type') ?? 'application/json',
      });
      res.end(await upstream.text());
    })().catch(() => {
      res.statusCode = 502;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/token`,
    port,
    forwarded,
    holdNext: () => new Promise<number>((r) => (hold = r)),
    received: () => received,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

// ---- the tests ---------------------------------------------------------------------------

function refreshTokens(relay: TokenRelay): string[] {
  return relay.forwarded
    .filter((f) => f.grantType === 'refresh_token')
    .map((f) => f.refreshToken ?? '');
}

describe('nexus up --workers 2: oauth2_authorization_code on SQLite (issue 13)', () => {
  let oidc: TestOidc;
  let rs: ResourceServer;
  let relay: TokenRelay;
  let node: TestNode;
  let adminPort: number;
  let agent: RawAgent;
  let callback = '';
  /** The callback URL the scripted browser was sent to (not followed: the test sends it). */
  let caught: string | undefined;

  beforeAll(async () => {
    let issuer = '';
    rs = await startResourceServer(() => issuer);
    adminPort = await freePort();
    callback = `http://127.0.0.1:${adminPort}/v1/connections/callback`;
    oidc = await startOidc(rs.url, {
      browserFetch: (input, init) => {
        const url = input instanceof Request ? input.url : String(input);
        if (url.startsWith(`${callback}?`)) {
          caught = url;
          return Promise.resolve(new Response('caught', { status: 200 }));
        }
        return fetch(input, init);
      },
    });
    issuer = oidc.issuer;
    relay = await startTokenRelay(() => oidc.tokenUrl);
    node = await startNode({
      services: {
        mail: {
          upstream: rs.url.replace(/\/$/, ''),
          auth: {
            type: 'oauth2_authorization_code',
            credential: 'web-client',
            authorize_url: oidc.authorizeUrl,
            token_url: relay.url,
            scope: 'openid offline_access api:read',
            resource: rs.url,
            authorize_params: { prompt: 'consent' },
            redirect_uri: callback,
          },
        },
      },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], methods: ['GET'] } }],
      overrides: { admin: { listen: `127.0.0.1:${adminPort}` }, log: { level: 'info' } },
      upArgs: ['--workers', '2'],
    });
    await oidc.setup(callback);
    await node.setCredential('web-client', WEB_CLIENT);
    agent = await rawAgent(node, 'bot');
  }, 60_000);

  afterAll(async () => {
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => node?.stop(),
      () => relay?.close(),
      () => rs?.close(),
      () => oidc?.close(),
    ];
    for (const step of steps) {
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    }
  });

  /** A signed GET of `/mail<path>` sent to worker `pid`. */
  async function mailOn(pids: number[], pid: number, path: string): Promise<Answer> {
    const url = `${node.proxyUrl}/mail${path}`;
    const headers = await signRequest({
      method: 'GET',
      url,
      lease: agent.lease,
      key: agent.key,
      intent: '',
    });
    const port = Number(new URL(node.proxyUrl).port);
    return over(await connectionTo(port, pids, pid), url, { headers });
  }

  /** The subject the resource server saw the token of (it verified the token). */
  const subjectOf = (a: Answer) => (JSON.parse(a.body) as { sub?: string }).sub;

  it('a connect started on one worker completes with its callback on the other, once', async () => {
    const pids = workerPids(node);
    expect(pids).toHaveLength(2);
    const [one, two] = pids as [number, number];
    // Issued with a short lifetime: the stored access token is due for refresh at once
    // (refresh_before is 30 s), and stays so for the next tests.
    oidc.setAccessTokenTtl(10);
    const start = await over(
      await connectionTo(adminPort, pids, one),
      `http://127.0.0.1:${adminPort}/v1/connections/mail`,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${node.operatorToken}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ principal: 'bot' }),
      },
    );
    expect(start.status).toBe(201);
    const authorizeUrl = (JSON.parse(start.body) as { authorize_url: string }).authorize_url;
    await oidc.browse(authorizeUrl, 'bot');
    expect(caught).toBeDefined();
    const url = caught!;
    const done = await over(await connectionTo(adminPort, pids, two), url);
    expect(done.status).toBe(200);
    expect(done.body).toContain('Connected');
    // The state is spent for every worker.
    for (const pid of [one, two, one, two]) {
      const again = await over(await connectionTo(adminPort, pids, pid), url);
      expect(again.status).toBe(403);
      expect(again.code).toBe('forbidden');
    }
    for (const pid of pids) {
      const list = await over(
        await connectionTo(adminPort, pids, pid),
        `http://127.0.0.1:${adminPort}/v1/connections?service=mail`,
        { headers: { authorization: `Bearer ${node.operatorToken}` } },
      );
      const body = JSON.parse(list.body) as { connections: { principal: string }[] };
      expect(body.connections.map((c) => c.principal)).toEqual(['bot']);
    }
    expect(oidc.counts.authorization_code).toBe(1);
  });

  it('kill -9 of the worker holding the refresh lock: the other worker takes it at the exit and refreshes', async () => {
    const pids = workerPids(node);
    const [one, two] = pids as [number, number];
    const before = { ...oidc.counts };
    const forwardedBefore = relay.forwarded.length;
    // Worker one takes the lock and sends its refresh, which the relay holds.
    const held = relay.holdNext();
    const onOne = mailOn(pids, one, '/held').catch((e: Error) => e);
    const from = await held;
    expect(await ownerOf(pids, from, relay.port)).toBe(one);
    // Worker two needs a refresh too: it waits for the lock, so the provider sees nothing.
    const onTwo = mailOn(pids, two, '/survivor');
    await new Promise((r) => setTimeout(r, 500));
    expect(relay.received()).toBe(forwardedBefore + 1);

    const killedAt = Date.now();
    process.kill(one, 'SIGKILL');
    const survivor = await onTwo;
    const waited = Date.now() - killedAt;
    expect(survivor.status).toBe(200);
    expect(subjectOf(survivor)).toBe('bot');
    // Released at the exit, not by the 30 s bound of the wait.
    expect(waited).toBeLessThan(10_000);
    expect(await onOne).toBeInstanceOf(Error);
    // The held refresh never reached the provider; worker two's spent the same (unspent)
    // refresh token once.
    expect(relay.forwarded.slice(forwardedBefore)).toHaveLength(1);
    expect(oidc.counts.refresh_token - before.refresh_token).toBe(1);
    expect(oidc.counts.errors - before.errors).toBe(0);

    const deadline = Date.now() + 20_000;
    while (!/worker \d listening again/.test(node.output())) {
      if (Date.now() > deadline) throw new Error(`worker not restarted:\n${node.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(node.output()).toMatch(/worker \d exited \(SIGKILL\); starting it again/);
  }, 60_000);

  it('concurrent requests through both workers: each refresh token is used once, every request gets a valid token', async () => {
    const pids = workerPids(node);
    expect(pids).toHaveLength(2);
    const port = Number(new URL(node.proxyUrl).port);
    /** 10 requests per worker, sent at once. */
    const burst = async (tag: string) => {
      // One connection steered at a time: steered concurrently, the primary's turns are
      // shared by 20 callers and one can keep landing on the other worker (a CI failure).
      const ready: Socket[] = [];
      for (let i = 0; i < 10; i++)
        for (const pid of pids) ready.push(await connectionTo(port, pids, pid));
      return Promise.all(
        ready.map(async (socket, i) => {
          const url = `${node.proxyUrl}/mail/${tag}-${i}`;
          const headers = await signRequest({
            method: 'GET',
            url,
            lease: agent.lease,
            key: agent.key,
            intent: '',
          });
          return over(socket, url, { headers });
        }),
      );
    };

    // Every stored token is due (10 s lifetime, refresh 30 s before): each worker's load
    // refreshes, one at a time, each with the token the previous refresh stored.
    let before = { ...oidc.counts };
    const due = await burst('due');
    for (const a of due) {
      expect(a.status).toBe(200);
      expect(subjectOf(a)).toBe('bot');
    }
    expect(oidc.counts.refresh_token - before.refresh_token).toBeGreaterThanOrEqual(1);
    expect(oidc.counts.errors - before.errors).toBe(0);

    // Long-lived tokens from now on; once every worker's cached 10 s token is stale (its
    // cache keeps a token for half its lifetime), one due token is refreshed once for
    // both workers: the other finds the new one under the lock.
    oidc.setAccessTokenTtl(3600);
    await new Promise((r) => setTimeout(r, 6000));
    before = { ...oidc.counts };
    const once = await burst('once');
    for (const a of once) {
      expect(a.status).toBe(200);
      expect(subjectOf(a)).toBe('bot');
    }
    expect(oidc.counts.refresh_token - before.refresh_token).toBe(1);
    expect(oidc.counts.errors - before.errors).toBe(0);

    // Over the whole run: no refresh token reached the provider twice.
    const spent = refreshTokens(relay);
    expect(spent.length).toBeGreaterThanOrEqual(3);
    expect(new Set(spent).size).toBe(spent.length);
    expect(oidc.counts.errors).toBe(0);
  }, 60_000);

  it('no token reaches a log line', () => {
    const log = node.output();
    for (const token of [...refreshTokens(relay), ...rs.tokens]) {
      expect(log).not.toContain(token);
    }
  });
});
