/**
 * Issue 4 end to end: a spawned `nexus up`, a loopback upstream that records and echoes,
 * the real SDK and `nexus run -- curl` as agents. Credential injection, zero exposure,
 * policy, replay and tampering, lease expiry and revocation, path escapes, audit
 * durability and verification, streaming and bounded memory.
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf, rawAgent, type RawAgent } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'ghp_proxyE2EsecretValue0123456789abcdef';
const PASSWORD = 'hunter2-is-a-long-password';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Sends a request exactly as given (no URL normalisation), over a fresh connection. */
function send(
  url: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: init.method ?? 'GET',
        headers: init.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/**
 * Writes `head` (a request line and fields, no Host unless given) on a fresh connection
 * and reads the whole answer until the server closes it.
 */
function rawExchange(url: string, head: string): Promise<RawResponse & { raw: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname, () => socket.write(head));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer, or not closed')));
    socket.on('end', () => {
      const raw = Buffer.concat(chunks).toString('latin1');
      const [top = '', body = ''] = raw.split('\r\n\r\n', 2);
      const [statusLine = '', ...lines] = top.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({
        status: Number(statusLine.split(' ')[1]),
        headers,
        body: Buffer.from(body, 'latin1'),
        raw,
      });
    });
  });
}

async function signed(
  node: TestNode,
  agent: RawAgent,
  path: string,
  init: { method?: string; body?: string; intent?: string; headers?: Record<string, string> } = {},
): Promise<Record<string, string>> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.body !== undefined) headers['content-type'] ??= 'application/json';
  const added = await signRequest({
    method: init.method ?? 'GET',
    url: node.proxyUrl + path,
    headers,
    body: init.body === undefined ? undefined : new TextEncoder().encode(init.body),
    lease: agent.lease,
    key: agent.key,
    intent: init.intent ?? 'e2e',
  });
  return { ...headers, ...added };
}

function problemCode(r: RawResponse): string | undefined {
  try {
    return (JSON.parse(r.body.toString()) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

/** Every encoding of the secrets the scrubber must catch. */
function leakForms(): string[] {
  const forms: string[] = [];
  for (const s of [SECRET, PASSWORD]) {
    const b = Buffer.from(s);
    forms.push(
      s,
      b.toString('base64'),
      b.toString('base64url'),
      b.toString('hex'),
      encodeURIComponent(s),
    );
  }
  forms.push(Buffer.from(`bot:${PASSWORD}`).toString('base64'));
  return forms;
}

/** `nexus run -- sh -c SCRIPT` as the agent bot, with agent rights only (issue 10). */
function runAsBot(node: TestNode, script: string, intent?: string) {
  return node.runAgent('bot', ['sh', '-c', script], {
    args: ['--agent', 'bot', ...(intent === undefined ? [] : ['--intent', intent])],
  });
}

describe('the proxy end to end', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
        legacy: {
          upstream: `${upstream.url}/base`,
          auth: { type: 'basic', credential: 'legacy-login' },
        },
      },
      agents: { bot: { roles: ['reader'] }, outsider: { roles: [] } },
      policies: [
        {
          id: 'read-echo',
          allow: { roles: ['reader'], services: ['echo', 'legacy'], methods: ['GET', 'POST'] },
        },
        { id: 'no-admin', deny: { services: ['echo'], paths: ['/admin/**'] } },
      ],
      overrides: { proxy: { max_body: '1MiB' } },
    });
    await node.setCredential('echo-token', { value: SECRET });
    await node.setCredential('legacy-login', { username: 'bot', password: PASSWORD });
    agent = await node.enroll('bot');
  });

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await upstream?.close();
  });

  it('injects the credential and strips what the agent tried to supply', async () => {
    upstream.reset();
    const res = await agent.fetch('echo', '/repos/acme/app?state=open', {
      headers: {
        authorization: 'Bearer agent-forged',
        cookie: 'sid=1',
        'x-http-method-override': 'DELETE',
      },
      intent: 'read issues',
    });
    expect(res.status).toBe(200);
    const seen = upstream.requests[0];
    expect(seen?.url).toBe('/repos/acme/app?state=open');
    expect(seen?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(seen?.headers.cookie).toBeUndefined();
    expect(seen?.headers['x-http-method-override']).toBeUndefined();
    expect(seen?.headers['workload-identity-token']).toBeUndefined();
    expect(seen?.headers.signature).toBeUndefined();
    expect(seen?.headers['nexus-intent']).toBeUndefined();
    // The echoed request comes back with the credential redacted.
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    expect(text).toContain('[REDACTED]');
  });

  it('basic auth reaches the upstream under its base path', async () => {
    upstream.reset();
    const res = await agent.fetch('legacy', '/v2/items', {
      method: 'POST',
      body: '{"a":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(upstream.requests[0]?.url).toBe('/base/v2/items');
    expect(upstream.requests[0]?.headers.authorization).toBe(
      `Basic ${Buffer.from(`bot:${PASSWORD}`).toString('base64')}`,
    );
    expect(upstream.requests[0]?.body.toString()).toBe('{"a":1}');
    expect(await res.text()).not.toContain(PASSWORD);
  });

  it('never returns an echoed credential, in any encoding, header, body, chunking or compression', async () => {
    const forms = leakForms();
    upstream.handle(async (_req, res) => {
      res.setHeader('x-plain', SECRET);
      res.setHeader('x-b64', Buffer.from(SECRET).toString('base64'));
      res.setHeader('location', `https://evil.example/cb?token=${encodeURIComponent(SECRET)}`);
      res.setHeader('set-cookie', `stolen=${SECRET}`);
      res.writeHead(302);
      const half = Math.floor(SECRET.length / 2);
      res.write(`{"first":"${SECRET.slice(0, half)}`);
      await new Promise((r) => setTimeout(r, 30));
      res.write(`${SECRET.slice(half)}","forms":${JSON.stringify(forms)}}`);
      res.end();
    });
    const res = await agent.fetch('echo', '/reflect');
    expect(res.status).toBe(302);
    const body = await res.text();
    const headerText = JSON.stringify([...res.headers]);
    for (const f of forms) {
      expect(body, `body leaks ${f}`).not.toContain(f);
      expect(headerText, `headers leak ${f}`).not.toContain(f);
    }
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(res.headers.get('location')).toContain('[REDACTED]');

    upstream.handle((_req, res) => {
      res.setHeader('content-encoding', 'gzip');
      res.end(gzipSync(Buffer.from(`compressed ${SECRET} ${Buffer.from(SECRET).toString('hex')}`)));
    });
    const gz = await agent.fetch('echo', '/gzip');
    const gzText = await gz.text();
    expect(gzText).toContain('compressed [REDACTED]');
    for (const f of forms) expect(gzText).not.toContain(f);
    upstream.reset();
  });

  it('denies by policy with 403 policy_denied and forwards nothing', async () => {
    upstream.reset();
    expect(await codeOf(agent.fetch('echo', '/admin/users'))).toBe('policy_denied');
    expect(await codeOf(agent.fetch('echo', '/x', { method: 'DELETE' }))).toBe('policy_denied');
    const outsider = await node.enroll('outsider');
    expect(await codeOf(outsider.fetch('echo', '/x'))).toBe('policy_denied');
    outsider.close();
    expect(upstream.requests).toHaveLength(0);
  });

  it('rejects a replayed request and forwards it once', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    const headers = await signed(node, raw, '/echo/once');
    const first = await send(node.proxyUrl, '/echo/once', { headers });
    expect(first.status).toBe(200);
    const again = await send(node.proxyUrl, '/echo/once', { headers });
    expect(again.status).toBe(401);
    expect(problemCode(again)).toBe('replay_detected');
    expect(upstream.requests).toHaveLength(1);
  });

  it('rejects a request with any covered part tampered after signing', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    const body = '{"amount":1}';
    const cases: [string, () => Promise<RawResponse>, string][] = [
      [
        'method',
        async () =>
          send(node.proxyUrl, '/echo/t', {
            method: 'POST',
            headers: await signed(node, raw, '/echo/t'),
          }),
        'signature_invalid',
      ],
      [
        'path',
        async () =>
          send(node.proxyUrl, '/echo/other', { headers: await signed(node, raw, '/echo/t') }),
        'signature_invalid',
      ],
      [
        'query',
        async () =>
          send(node.proxyUrl, '/echo/t?admin=1', { headers: await signed(node, raw, '/echo/t') }),
        'signature_invalid',
      ],
      [
        'body',
        async () =>
          send(node.proxyUrl, '/echo/t', {
            method: 'POST',
            body: '{"amount":1000}',
            headers: await signed(node, raw, '/echo/t', { method: 'POST', body }),
          }),
        'digest_mismatch',
      ],
      [
        'intent',
        async () =>
          send(node.proxyUrl, '/echo/t', {
            headers: {
              ...(await signed(node, raw, '/echo/t')),
              'nexus-intent': '"something else"',
            },
          }),
        'signature_invalid',
      ],
      [
        'lease',
        async () => {
          const other = await rawAgent(node, 'bot');
          return send(node.proxyUrl, '/echo/t', {
            headers: {
              ...(await signed(node, raw, '/echo/t')),
              'workload-identity-token': other.lease,
            },
          });
        },
        'signature_invalid',
      ],
    ];
    for (const [what, run, code] of cases) {
      const r = await run();
      expect(r.status, what).toBeGreaterThanOrEqual(400);
      expect(problemCode(r), what).toBe(code);
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('rejects a revoked lease', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    const claims = JSON.parse(
      Buffer.from(raw.lease.split('.')[1] as string, 'base64url').toString(),
    ) as { jti: string };
    const revoked = await node.cli(['lease', 'revoke', '--', claims.jti]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const r = await send(node.proxyUrl, '/echo/x', { headers: await signed(node, raw, '/echo/x') });
    expect(r.status).toBe(401);
    expect(problemCode(r)).toBe('lease_revoked');
    expect(upstream.requests).toHaveLength(0);
  });

  it('rejects a path that escapes its service and forwards nothing', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    for (const path of [
      '/echo/../admin',
      '/echo/%2e%2e/admin',
      '/echo/a%2fb',
      '/echo/a%5cb',
      '/echo//evil',
      '//echo/x',
    ]) {
      const r = await send(node.proxyUrl, path, { headers: await signed(node, raw, '/echo/x') });
      expect(r.status, path).toBe(400);
      expect(problemCode(r), path).toBe('path_invalid');
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses a body over the limit with 413 before anything is forwarded', async () => {
    upstream.reset();
    const big = 'x'.repeat(1024 * 1024 + 1);
    expect(
      await codeOf(
        agent.fetch('echo', '/upload', {
          method: 'POST',
          body: big,
          headers: { 'content-type': 'text/plain' },
        }),
      ),
    ).toBe('body_too_large');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers an oversized header section with 431 headers_too_large as problem+json', async () => {
    upstream.reset();
    const r = await send(node.proxyUrl, '/echo/x', {
      headers: { 'x-padding': 'a'.repeat(20_000) },
    });
    expect(r.status).toBe(431);
    expect(r.headers['content-type']).toBe('application/problem+json');
    expect(problemCode(r)).toBe('headers_too_large');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers an HTTP/1.1 request without Host with 400 request_invalid as problem+json', async () => {
    upstream.reset();
    const cases: [string, string][] = [
      [node.proxyUrl, 'GET /echo/x HTTP/1.1\r\n\r\n'],
      // The WebSocket handshake takes the upgrade path, the Authority its own routes.
      [
        node.proxyUrl,
        'GET /echo/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
          'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      ],
      [node.proxyUrl, 'GET /.well-known/jwks.json HTTP/1.1\r\n\r\n'],
      [node.adminUrl, 'GET /v1/health HTTP/1.1\r\n\r\n'],
    ];
    for (const [url, head] of cases) {
      const r = await rawExchange(url, head);
      const what = `${url} ${head.split('\r\n')[0]}`;
      expect(r.status, what).toBe(400);
      expect(r.headers['content-type'], what).toBe('application/problem+json');
      expect(r.headers['nexus-error'], what).toBe('request_invalid');
      expect(r.headers.connection, what).toBe('close');
      expect(problemCode(r), what).toBe('request_invalid');
    }
    expect(upstream.requests).toHaveLength(0);
    // HTTP/1.0 has no Host requirement, and an empty Host is a Host: both are routed.
    const old = await rawExchange(node.proxyUrl, 'GET /.well-known/jwks.json HTTP/1.0\r\n\r\n');
    expect(old.status).toBe(200);
    const empty = await rawExchange(
      node.proxyUrl,
      'GET /.well-known/jwks.json HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n',
    );
    expect(empty.status).toBe(200);
  });

  it('streams server-sent events without buffering', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    upstream.handle(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      await released;
      res.end('data: two\n\n');
    });
    const res = await agent.fetch('echo', '/events');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: one\n\n');
    release();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe('data: two\n\n');
    upstream.reset();
  });

  it('an agent that leaves a server-sent-events stream ends the upstream stream too', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // One event, then silence: only the proxy giving up on the stream ends it.
      res.write('data: first\n\n');
      res.on('close', () => upstreamClosed());
    });
    const controller = new AbortController();
    const res = await agent.fetch('echo', '/quiet-stream', { signal: controller.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: first\n\n');
    controller.abort();
    await closed;
    upstream.reset();
    expect((await agent.fetch('echo', '/after-stream')).status).toBe(200);
  });

  it('an agent that leaves before the upstream answers ends the upstream stream too', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    upstream.handle(async (_req, res) => {
      res.on('close', () => upstreamClosed());
      await new Promise((r) => setTimeout(r, 400));
      // Headers, then silence: only the proxy giving up on the stream ends it.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
    const controller = new AbortController();
    const pending = agent.fetch('echo', '/slow-stream', { signal: controller.signal });
    setTimeout(() => controller.abort(), 150);
    await expect(pending).rejects.toThrow();
    await closed;
    upstream.reset();
    expect((await agent.fetch('echo', '/after-slow-stream')).status).toBe(200);
  });

  it('keeps the proxy memory bounded on a 100 MB streamed response', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const total = 100 * 1024 * 1024;
    upstream.handle(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
    });
    const rss = async () => {
      const status = await readFile(`/proc/${node.process.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) * 1024;
    };
    const before = await rss();
    let peak = before;
    const res = await agent.fetch('echo', '/big');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let received = 0;
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.length;
      if (++n % 64 === 0) peak = Math.max(peak, await rss());
    }
    expect(received).toBe(total);
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
    upstream.reset();
  }, 90_000); // 100 MiB through every view of the redactor: ~10 s on a quiet machine

  it('writes an audit record for every request, allowed or denied, without secrets', async () => {
    const q = await node.cli(['audit', 'query', '--json', '--limit', '500']);
    expect(q.code).toBe(0);
    const records = JSON.parse(q.stdout) as Record<string, unknown>[];
    const allowed = records.find(
      (r) => r.kind === 'request' && r.decision === 'allow' && r.path === '/repos/acme/app',
    );
    expect(allowed).toMatchObject({
      agent: 'bot',
      service: 'echo',
      method: 'GET',
      intent: 'read issues',
      credential: { name: 'echo-token', version: 1 },
      rule_ids: ['read-echo'],
    });
    expect(typeof allowed?.policy_hash).toBe('string');
    expect((allowed?.signature as { input: string }).input).toContain('wimse=');
    const outcome = records.find(
      (r) => r.kind === 'outcome' && r.request_id === allowed?.request_id,
    );
    expect(outcome).toMatchObject({ upstream_status: 200 });
    expect(Number(outcome?.redactions)).toBeGreaterThan(0);
    const denied = records.find((r) => r.path === '/admin/users');
    expect(denied).toMatchObject({ rule_ids: ['no-admin'] });
    const text = JSON.stringify(records);
    for (const f of leakForms()) expect(text).not.toContain(f);
    expect(text).not.toContain('state=open');
  });

  it('nexus run gives curl a signing sidecar and nothing secret in its environment', async () => {
    upstream.reset();
    const r = await runAsBot(
      node,
      'curl -s "$NEXUS_PROXY/echo/from-curl?x=1"; echo; env',
      'curl demo',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"url":"/from-curl?x=1"');
    expect(r.stdout).toContain('[REDACTED]');
    expect(upstream.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(r.stdout).toMatch(/NEXUS_PROXY=http:\/\/127\.0\.0\.1:\d+/);
    expect(r.stdout).not.toContain(node.operatorToken);
    expect(r.stdout).not.toContain('NEXUS_OPERATOR_TOKEN');
    expect(r.stdout).not.toContain(r.token);
    expect(r.stdout).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    for (const f of leakForms()) expect(r.stdout).not.toContain(f);
  });

  it('a reload while a request body is still arriving does not break that request', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    const body = JSON.stringify({ part: 'a'.repeat(2000) });
    const headers = await signed(node, raw, '/echo/slow-upload', { method: 'POST', body });
    const u = new URL(node.proxyUrl);
    const done = new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          path: '/echo/slow-upload',
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 100));
      void node
        .cli(['reload'])
        .then((r) => {
          expect(r.code).toBe(0);
          req.end(body.slice(100));
        })
        .catch(reject);
    });
    expect(await done).toBe(200);
    expect(upstream.requests[0]?.body.toString()).toBe(body);
  });

  it('forwards only content codings the scrubber can decode, and no rewrite headers', async () => {
    upstream.reset();
    await agent.fetch('echo', '/codings', {
      headers: { 'accept-encoding': 'zstd, gzip;q=0.8, *', 'x-original-url': '/admin/users' },
    });
    expect(upstream.requests[0]?.headers['accept-encoding']).toBe('gzip;q=0.8');
    expect(upstream.requests[0]?.headers['x-original-url']).toBeUndefined();
  });

  it('refuses dot segments hidden behind matrix parameters', async () => {
    upstream.reset();
    const raw = await rawAgent(node, 'bot');
    for (const path of ['/echo/public/..;/admin/x', '/echo/public/..%3Bx/admin']) {
      const r = await send(node.proxyUrl, path, { headers: await signed(node, raw, '/echo/x') });
      expect(problemCode(r), path).toBe('path_invalid');
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('the nexus run sidecar refuses browser requests and the Authority endpoints', async () => {
    upstream.reset();
    const r = await runAsBot(
      node,
      'curl -s -X POST -H "Origin: https://evil.example" "$NEXUS_PROXY/echo/x"; echo; curl -s -X POST "$NEXUS_PROXY/v1/leases/renew"; echo',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"code":"forbidden"');
    expect(r.stdout).toContain('"code":"service_unknown"');
    expect(r.stdout).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    expect(upstream.requests).toHaveLength(0);
  });

  it('the nexus run sidecar refuses requests addressed to another host (DNS rebinding)', async () => {
    upstream.reset();
    const r = await runAsBot(
      node,
      'curl -s -H "Host: evil.example:80" "$NEXUS_PROXY/echo/x"; echo; curl -s -o /dev/null -w "%{http_code}" "$NEXUS_PROXY/echo/y"',
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"code":"forbidden"');
    expect(r.stdout.trim().endsWith('200')).toBe(true);
    expect(upstream.requests.map((q) => q.url)).toEqual(['/y']);
  });

  it('fails closed with 503 audit_unavailable when the audit cannot be written', async () => {
    upstream.reset();
    const db = new Database(join(node.dir, '.nexus', 'nexus.db'));
    db.exec(
      "CREATE TRIGGER test_audit_down BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
    );
    try {
      expect(await codeOf(agent.fetch('echo', '/while-down'))).toBe('audit_unavailable');
      expect(upstream.requests).toHaveLength(0);
    } finally {
      db.exec('DROP TRIGGER test_audit_down');
      db.close();
    }
    expect((await agent.fetch('echo', '/after-recovery')).status).toBe(200);
    expect(upstream.requests.map((r) => r.url)).toEqual(['/after-recovery']);
  });

  it('audit verify passes, then fails naming the first bad record after a row is edited', async () => {
    const ok = await node.cli(['audit', 'verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK: \d+ records/);
    expect(await node.stop()).toBe(0);
    const db = new Database(join(node.dir, '.nexus', 'nexus.db'));
    const row = db.prepare('SELECT seq, record FROM audit WHERE seq = 3').get() as {
      seq: number;
      record: string;
    };
    db.exec('DROP TRIGGER audit_no_update');
    db.prepare('UPDATE audit SET record = ? WHERE seq = 3').run(
      row.record.replace(/"path":"[^"]*"/, '"path":"/tampered"'),
    );
    db.close();
    const bad = await node.cli(['audit', 'verify', '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, seq: 3, reason: 'edited' });

    // Restore the record, then edit only an index column `audit query` filters on.
    const db2 = new Database(join(node.dir, '.nexus', 'nexus.db'));
    db2.prepare('UPDATE audit SET record = ? WHERE seq = 3').run(row.record);
    expect((await node.cli(['audit', 'verify'])).code).toBe(0);
    db2.prepare("UPDATE audit SET agent = 'someone-else' WHERE seq = 5").run();
    db2.close();
    const hidden = await node.cli(['audit', 'verify', '--json']);
    expect(hidden.code).toBe(1);
    expect(JSON.parse(hidden.stdout)).toMatchObject({ ok: false, seq: 5, reason: 'edited' });
  });
});

describe('lease expiry at the proxy', () => {
  it('rejects a request signed in time but sent after the lease expired', async () => {
    const upstream = await startUpstream();
    const node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
      overrides: { authority: { lease_ttl: '2s', lease_max_lifetime: '1h', clock_skew: '1s' } },
    });
    try {
      const raw = await rawAgent(node, 'bot');
      const headers = await signed(node, raw, '/echo/late');
      // Lease times are whole seconds: 4.5 s is past exp (2 s) + skew (1 s) at any phase.
      await new Promise((r) => setTimeout(r, 4500));
      const r = await send(node.proxyUrl, '/echo/late', { headers });
      expect(r.status).toBe(401);
      expect(problemCode(r)).toBe('lease_expired');
      expect(upstream.requests).toHaveLength(0);
    } finally {
      await node.stop();
      await upstream.close();
    }
  });
});
