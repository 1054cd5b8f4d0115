/**
 * Issue 6, resource exhaustion, the admin API and offline attacks: huge header sets and
 * bodies, slow clients, many concurrent streams and decompression bombs (the proxy stays
 * responsive to other agents); the admin API without a token, with a wrong one and with an
 * agent's lease; and what an insider with database read access or a stolen backup finds
 * (no plaintext secret), a wrong master key, and the debug log of the whole file.
 */
import { chmod, copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enroll, type NexusAgent } from '@nexus-proxy/sdk';
import { runCli, startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import {
  attack,
  bytesUnder,
  codes,
  enrollAttacker,
  everything,
  filesUnder,
  leaks,
  rawExchange,
  rawRequest,
  send,
  signFor,
  statuses,
  type Attacker,
} from './harness.js';

const TOKEN = 'nxs_exhaust-Bearer-Token-0123456789abcdef';
const BASIC_PASS = 'Basic/Pass+word=exhaust-0123456789';
const SECRETS = [TOKEN, BASIC_PASS];
const MAX_BODY = 64 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) =>
    Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0),
  );
}

describe('resource exhaustion, admin API and offline attacks', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let mallory: Attacker;
  let bystander: NexusAgent;
  const enrollmentTokens: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
        legacy: { upstream: upstream.url, auth: { type: 'basic', credential: 'legacy' } },
      },
      agents: { mallory: { roles: ['attacker'] }, bystander: { roles: ['attacker'] } },
      policies: [{ id: 'all', allow: { roles: ['attacker'], methods: ['*'] } }],
      overrides: { proxy: { max_body: `${MAX_BODY}B` } },
    });
    await node.setCredential('echo-token', { value: TOKEN });
    // Through the CLI (stdin, json format), as an operator would.
    const set = await node.cli(['credential', 'set', 'legacy', '--format', 'json'], {
      stdin: JSON.stringify({ username: 'ops', password: BASIC_PASS }),
    });
    expect(set.code).toBe(0);
    mallory = await enrollAttacker(node, 'mallory');
    const t = await node.enrollmentToken('bystander');
    enrollmentTokens.push(t);
    bystander = await enroll({ authority: node.proxyUrl, enrollmentToken: t, autoRenew: false });
  });

  afterAll(async () => {
    bystander?.close();
    await node?.stop();
    await upstream?.close();
  });

  /** The other agent gets its answer, and quickly. */
  async function bystanderServed(withinMs = 2000): Promise<void> {
    const started = Date.now();
    const res = await bystander.fetch('echo', '/still-here', { intent: 'bystander' });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(Date.now() - started).toBeLessThan(withinMs);
  }

  // --- sizes ---------------------------------------------------------------------------

  it('a header section over the limit: 431, nothing forwarded', async () => {
    upstream.reset();
    const pairs = Object.entries(await signFor(node, mallory, '/echo/x'));
    const out = await rawExchange(
      node.proxyUrl,
      rawRequest('GET /echo/x HTTP/1.1', [['Host', 'x'], ...pairs, ['X-Pad', 'a'.repeat(20_000)]]),
    );
    expect(statuses(out)).toEqual([431]);
    expect(upstream.requests).toHaveLength(0);
  });

  it('thousands of tiny headers: 431', async () => {
    const headers: [string, string][] = [['Host', 'x']];
    for (let i = 0; i < 3000; i++) headers.push([`x-h${i}`, '1']);
    const out = await rawExchange(node.proxyUrl, rawRequest('GET /echo/x HTTP/1.1', headers));
    expect(statuses(out)).toEqual([431]);
  });

  it('a declared body over the limit: 413 before a single body byte is sent', async () => {
    upstream.reset();
    const pairs = Object.entries(
      await signFor(node, mallory, '/echo/big', { method: 'POST', body: 'x' }),
    );
    const out = await rawExchange(
      node.proxyUrl,
      rawRequest('POST /echo/big HTTP/1.1', [
        ['Host', 'x'],
        ...pairs.filter(([k]) => k !== 'content-length'),
        ['Content-Length', String(1024 ** 3)],
      ]),
    );
    expect(statuses(out)).toEqual([413]);
    expect(codes(out)).toEqual(['body_too_large']);
    expect(upstream.requests).toHaveLength(0);
  });

  it('an unauthenticated huge body is refused on its headers, unread', async () => {
    const out = await rawExchange(
      node.proxyUrl,
      rawRequest('POST /echo/big HTTP/1.1', [
        ['Host', 'x'],
        ['Content-Length', String(1024 ** 3)],
      ]),
    );
    expect(statuses(out)).toEqual([401]);
    expect(codes(out)).toEqual(['lease_missing']);
    expect(out.toLowerCase()).toContain('connection: close');
  });

  it('a chunked body growing past the limit: 413, nothing forwarded', async () => {
    upstream.reset();
    const pairs = Object.entries(
      await signFor(node, mallory, '/echo/chunks', { method: 'POST', body: 'x' }),
    ).filter(([k]) => k !== 'content-length');
    const chunk = 'a'.repeat(16 * 1024);
    const parts = [
      rawRequest('POST /echo/chunks HTTP/1.1', [
        ['Host', 'x'],
        ...pairs,
        ['Transfer-Encoding', 'chunked'],
      ]),
    ];
    for (let i = 0; i < 8; i++) parts.push(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    const out = await rawExchange(node.proxyUrl, parts, { gapMs: 5 });
    expect(statuses(out)).toEqual([413]);
    expect(codes(out)).toEqual(['body_too_large']);
    expect(upstream.requests).toHaveLength(0);
  });

  it('a deep, long path with thousands of segments is answered at once', async () => {
    const target = `/echo/${'a/'.repeat(3000)}b`;
    const started = Date.now();
    const r = await attack(node, mallory, target);
    expect(r.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  // --- slow and many clients -----------------------------------------------------------

  it('slowloris: 200 connections dribbling headers do not starve another agent', async () => {
    const url = new URL(node.proxyUrl);
    const sockets: Socket[] = [];
    for (let i = 0; i < 200; i++) {
      const s = connect(Number(url.port), url.hostname);
      s.on('error', () => undefined);
      s.write('GET /echo/x HTTP/1.1\r\nHost: x\r\n');
      sockets.push(s);
    }
    const drip = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write('X-Slow: 1\r\n');
    }, 200);
    try {
      await sleep(300);
      await bystanderServed();
    } finally {
      clearInterval(drip);
      for (const s of sockets) s.destroy();
    }
  });

  it('a signed request trickling its body does not block another agent', async () => {
    upstream.reset();
    const body = 'z'.repeat(2000);
    const pairs = Object.entries(
      await signFor(node, mallory, '/echo/trickle', { method: 'POST', body }),
    );
    const url = new URL(node.proxyUrl);
    const s = connect(Number(url.port), url.hostname);
    s.on('error', () => undefined);
    s.write(
      rawRequest('POST /echo/trickle HTTP/1.1', [
        ['Host', 'x'],
        ...pairs,
        ['Content-Length', '2000'],
      ]),
    );
    const drip = setInterval(() => s.write('z'), 20);
    try {
      await bystanderServed();
      expect(upstream.requests.filter((r) => r.url === '/trickle')).toHaveLength(0);
    } finally {
      clearInterval(drip);
      s.destroy();
    }
  });

  it('200 concurrent streams to a slow upstream: all answered, and another agent too', async () => {
    upstream.reset();
    upstream.handle(async (req, res) => {
      if (req.url.startsWith('/slow')) await sleep(400);
      res.end('ok');
    });
    const many = Promise.all(
      Array.from({ length: 200 }, (_, i) => attack(node, mallory, `/echo/slow/${i}`)),
    );
    await sleep(100);
    await bystanderServed();
    const all = await many;
    expect(all.map((r) => r.status)).toEqual(Array(200).fill(200));
    upstream.reset();
  });

  it('a decompression bomb streams through in bounded memory, redacted, while others are served', async () => {
    const pid = node.process.pid!;
    const before = await rssKiB(pid);
    // 64 gzip members of 1 MiB of zeros each (~1 KiB each on the wire), then the token.
    const MIB = 1024 * 1024;
    const member = gzipSync(Buffer.alloc(MIB), { level: 9 });
    const COUNT = 64;
    upstream.handle(async (req, res) => {
      if (req.url !== '/bomb') return void res.end('ok');
      res.writeHead(200, {
        'content-encoding': 'gzip',
        'content-type': 'application/octet-stream',
      });
      for (let i = 0; i < COUNT; i++) {
        if (!res.write(member)) await new Promise((r) => res.once('drain', r));
      }
      res.end(gzipSync(`tail ${String(req.headers.authorization)}`));
    });
    const headers = await signFor(node, mallory, '/echo/bomb');
    // Count the bytes as they come, keep only the tail (the client must not be the bottleneck).
    const bomb = fetch(`${node.proxyUrl}/echo/bomb`, { headers }).then(async (res) => {
      let total = 0;
      let tail = Buffer.alloc(0);
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        total += chunk.length;
        tail = Buffer.concat([tail, chunk]).subarray(-256);
      }
      return { status: res.status, total, tail };
    });
    await sleep(50);
    await bystanderServed(3000);
    const r = await bomb;
    upstream.reset();
    expect(r.status).toBe(200);
    // The bearer mechanic reports the token (not `Bearer <token>`) as its secret.
    expect(r.total).toBe(COUNT * MIB + 'tail Bearer [REDACTED]'.length);
    expect(r.tail.subarray(-22).toString()).toBe('tail Bearer [REDACTED]');
    expect(leaks(r.tail, SECRETS)).toEqual([]);
    // 64 MiB of output, but the proxy never held more than a few buffers of it.
    expect((await rssKiB(pid)) - before).toBeLessThan(96 * 1024);
  });

  // --- admin API -----------------------------------------------------------------------

  async function adminAs(
    authorization: string | undefined,
    method: string,
    path: string,
    extra: Record<string, string> = {},
  ) {
    const headers: Record<string, string> = { ...extra };
    if (authorization !== undefined) headers.authorization = authorization;
    const body =
      method === 'GET' ? undefined : JSON.stringify({ fields: { value: 'attacker-chosen-value' } });
    if (body) headers['content-type'] = 'application/json';
    return send(node.adminUrl, path, { method, headers, body });
  }

  const PROTECTED: [string, string][] = [
    ['GET', '/v1/agents'],
    ['GET', '/v1/credentials'],
    ['PUT', '/v1/credentials/echo-token'],
    ['POST', '/v1/leases/revoke-all'],
    ['POST', '/v1/agents/mallory/enrollment-tokens'],
    ['GET', '/v1/audit/export'],
    ['POST', '/v1/vault/rotate-master-key'],
    ['POST', '/v1/mcp/echo/registration'],
  ];

  it('admin API without a token: 401 unauthorized on every protected route', async () => {
    for (const [method, path] of PROTECTED) {
      const r = await adminAs(undefined, method, path);
      expect([path, r.status, r.code]).toEqual([path, 401, 'unauthorized']);
    }
  });

  it('admin API with a wrong or malformed operator token: 401', async () => {
    const wrong = `nxo_${'A'.repeat(43)}`;
    for (const auth of [
      `Bearer ${wrong}`,
      `bearer ${node.operatorToken}`,
      `Bearer  ${node.operatorToken}`,
      `Bearer ${node.operatorToken}x`,
      `Bearer ${node.operatorToken.slice(0, -1)}`,
      `Basic ${Buffer.from(`x:${node.operatorToken}`).toString('base64')}`,
      node.operatorToken,
    ]) {
      for (const [method, path] of PROTECTED.slice(0, 3)) {
        const r = await adminAs(auth, method, path);
        expect([auth.slice(0, 8), path, r.status, r.code]).toEqual([
          auth.slice(0, 8),
          path,
          401,
          'unauthorized',
        ]);
      }
    }
  });

  it("admin API with an agent's lease (as Bearer, or signed like a proxy request): 401", async () => {
    for (const [method, path] of PROTECTED) {
      const asBearer = await adminAs(`Bearer ${mallory.lease}`, method, path);
      expect([path, asBearer.status, asBearer.code]).toEqual([path, 401, 'unauthorized']);
      const signed = await signFor(node, mallory, path, { method });
      const asSigned = await send(node.adminUrl, path, { method, headers: signed });
      expect([path, asSigned.status, asSigned.code]).toEqual([path, 401, 'unauthorized']);
    }
    // The credential was not replaced by any of these.
    upstream.reset();
    const r = await attack(node, mallory, '/echo/check');
    expect(r.status).toBe(200);
    expect(upstream.requests[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('the admin API is not served on the proxy listener', async () => {
    for (const [method, path] of PROTECTED) {
      const r = await send(node.proxyUrl, path, {
        method,
        headers: { authorization: `Bearer ${node.operatorToken}` },
      });
      expect([path, r.status]).toEqual([path, r.status === 405 ? 405 : 404]);
      expect(leaks(everything(r), SECRETS)).toEqual([]);
    }
  });

  it('no admin endpoint returns a credential value (write-only vault)', async () => {
    const auth = `Bearer ${node.operatorToken}`;
    const seen: Buffer[] = [];
    for (const path of [
      '/v1/credentials',
      '/v1/services',
      '/v1/audit?limit=500',
      '/v1/audit/export',
      '/v1/openapi.json',
      '/v1/leases?all=true',
    ]) {
      const r = await send(node.adminUrl, path, { headers: { authorization: auth } });
      expect([path, r.status]).toEqual([path, 200]);
      seen.push(...(everything(r) as Buffer[]));
    }
    const direct = await send(node.adminUrl, '/v1/credentials/echo-token', {
      headers: { authorization: auth },
    });
    expect([direct.status, direct.code]).toEqual([405, 'method_not_allowed']);
    expect(leaks(seen, SECRETS)).toEqual([]);
  });

  // --- offline -------------------------------------------------------------------------

  it('the database, its WAL and .nexus/ hold no plaintext secret or token', async () => {
    // Make sure plenty went through the store first (audit, leases, credentials).
    enrollmentTokens.push(await node.enrollmentToken('mallory'));
    const dir = join(node.dir, '.nexus');
    const names = await filesUnder(dir);
    expect(names.some((n) => n.endsWith('nexus.db'))).toBe(true);
    expect(leaks(await bytesUnder(dir), SECRETS)).toEqual([]);
    for (const name of names) {
      // `nexus init` keeps the operator's own keys here (owner-only): the master key and
      // the first operator token. Nothing else may hold a token in clear.
      if (name.endsWith('master.key') || name.endsWith('operator.token')) {
        expect((await stat(name)).mode & 0o077).toBe(0);
        continue;
      }
      const text = (await readFile(name)).toString('latin1');
      expect(text).not.toContain(node.operatorToken);
      for (const t of enrollmentTokens) expect(text).not.toContain(t);
    }
    expect((await stat(dir)).mode & 0o077).toBe(0);
  });

  it('a stolen backup holds no plaintext secret and does not open with another master key', async () => {
    const dir = join(node.dir, 'stolen');
    await mkdir(dir);
    const db = new Database(join(node.dir, '.nexus', 'nexus.db'), { readonly: true });
    await db.backup(join(dir, 'backup.db'));
    db.close();
    const backup = await readFile(join(dir, 'backup.db'));
    expect(backup.length).toBeGreaterThan(0);
    expect(leaks(backup, SECRETS)).toEqual([]);
    expect(backup.toString('latin1')).not.toContain(node.operatorToken);

    // The thief runs Nexus on the backup with a master key of their own (owner-only
    // modes, or `nexus up` refuses the state before it gets to the key: issue 10).
    await mkdir(join(dir, '.nexus'), { mode: 0o700 });
    await copyFile(join(dir, 'backup.db'), join(dir, '.nexus', 'nexus.db'));
    await chmod(join(dir, '.nexus', 'nexus.db'), 0o600);
    const config = (await readFile(node.configPath, 'utf8')).replace(
      /127\.0\.0\.1:\d+/g,
      '127.0.0.1:0',
    );
    await writeFile(join(dir, 'nexus.yaml'), config);
    const thief = await runCli(['up', '--config', join(dir, 'nexus.yaml')], {
      env: { NEXUS_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') },
      timeoutMs: 15_000,
    });
    expect(thief.code).not.toBe(0);
    expect(`${thief.stdout}${thief.stderr}`).toMatch(/master key/i);
    expect(leaks([thief.stdout, thief.stderr], SECRETS)).toEqual([]);
  });

  it('a second node with a wrong master key on the live store fails clearly, revealing nothing', async () => {
    // Issue 10: the running node holds the store's node lock, so the second node stops
    // there (store_in_use), before it reads the key. (A wrong key on a store no node
    // serves: the stolen-backup test above, and authority.e2e's start-up failures.)
    const r = await runCli(['up', '--config', node.configPath], {
      env: { NEXUS_MASTER_KEY: Buffer.alloc(32, 9).toString('base64') },
      timeoutMs: 15_000,
    });
    expect(r.code).not.toBe(0);
    const out = `${r.stdout}${r.stderr}`;
    expect(out).toContain('(store_in_use)');
    expect(out.trim().split('\n').length).toBeLessThanOrEqual(3);
    expect(leaks(out, SECRETS)).toEqual([]);
  });

  it('the debug log of the whole file holds no secret, token or key', () => {
    const log = node.output();
    expect(log.length).toBeGreaterThan(0);
    expect(leaks(log, SECRETS)).toEqual([]);
    expect(log).not.toContain(node.operatorToken);
    for (const t of enrollmentTokens) expect(log).not.toContain(t);
    expect(log).not.toContain(mallory.privateD);
  });
});
