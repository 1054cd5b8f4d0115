/**
 * Issue 11, WebSocket upgrades: the handshake is signed, verified, authorised by policy
 * (and the service's `websocket` opt-in), audited and injected like any request; the
 * stream is relayed with every upstream message, close reason and ping kept from leaking
 * the injected credential. A real node, a real `ws` upstream on loopback that records what
 * it got, the agent through a raw signed handshake, `nexus run`'s sidecar (path mode) and
 * its forward proxy (`ws://` absolute-form and `wss://` in an intercepted CONNECT).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { decodeJwt } from 'jose';
import { parse, stringify } from 'yaml';
import { signRequest } from '@nexus-proxy/protocol';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { rawAgent, type RawAgent } from './helpers/agents.js';

const SECRET = 'ws-upstream-secret-0123456789abcdefXYZ';
const AGENT = join(REPO, 'test/fixtures/ws-agent.mjs');

interface Connection {
  path: string;
  headers: IncomingHttpHeaders;
  received: { data: string; binary: boolean }[];
  pongs: string[];
  closed: boolean;
}

interface WsUpstream {
  readonly url: string;
  readonly connections: Connection[];
  close(): Promise<void>;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A hostile `ws` upstream. It offers permessage-deflate (it would compress if asked), and
 * by path: `/leak` sends the credential it received in every way a WebSocket can (one
 * frame, binary, fragments, TCP segments, a ping, the close reason); `/whoami` sends the
 * Authorization it got, echoes, and closes on "bye"; `/hold` stays open.
 */
async function startWsUpstream(): Promise<WsUpstream> {
  const connections: Connection[] = [];
  const server: Server = createServer((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  server.on('upgrade', (req, socket, head) => {
    // `/refuse`: a 401 that echoes the credential in a header and in the body.
    if (req.url === '/refuse') {
      const body = JSON.stringify({ got: req.headers.authorization });
      socket.end(
        `HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n` +
          `x-echo: ${req.headers.authorization}\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  wss.on('connection', (ws, req) => {
    const c: Connection = {
      path: req.url ?? '',
      headers: req.headers,
      received: [],
      pongs: [],
      closed: false,
    };
    connections.push(c);
    ws.on('close', () => (c.closed = true));
    ws.on('pong', (d) => c.pongs.push(d.toString()));
    ws.on('message', (d, binary) => {
      const data = Buffer.isBuffer(d) ? d.toString() : String(d);
      c.received.push({ data, binary });
      if (c.path === '/whoami') {
        if (data === 'bye') ws.close(1000, 'done');
        else ws.send(data);
      }
    });
    if (c.path === '/whoami') ws.send(`auth:${req.headers.authorization ?? ''}`);
    if (c.path === '/leak') void leak(ws);
    if (c.path === '/split') void split(ws, false);
    if (c.path === '/split-close') void split(ws, true);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connections,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function leak(ws: WebSocket): Promise<void> {
  const sent = (f: (cb: (err?: Error) => void) => void) =>
    new Promise<void>((r, j) => f((e) => (e ? j(e) : r())));
  await sent((cb) => ws.send(`one ${SECRET} frame`, cb));
  await sent((cb) => ws.send(Buffer.from(`binary ${SECRET}`), { binary: true }, cb));
  // One message in three fragments, the secret cut by both boundaries.
  const third = Math.floor(SECRET.length / 3);
  await sent((cb) => ws.send(`frag ${SECRET.slice(0, third)}`, { fin: false }, cb));
  await sent((cb) => ws.send(SECRET.slice(third, 2 * third), { fin: false }, cb));
  await sent((cb) => ws.send(`${SECRET.slice(2 * third)} end`, { fin: true }, cb));
  // One frame written byte by byte: each write its own TCP segment (no Nagle delay).
  const socket = (ws as unknown as { _socket: Socket })._socket;
  socket.setNoDelay(true);
  const payload = Buffer.from(`tcp ${SECRET}`);
  const frame = Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
  for (const byte of frame) {
    socket.write(Buffer.from([byte]));
    await pause(2);
  }
  await sent((cb) => ws.ping(SECRET, undefined, cb));
  await sent((cb) => ws.send('last', cb));
  ws.close(4001, `bye ${SECRET}`);
}

/**
 * An upstream that answers every handshake with a valid 101 that selects
 * permessage-deflate although nobody offered it (it would then send compressed frames).
 */
async function startForcingUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createNetServer((socket) => {
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(buf)?.[1] ?? '';
      const accept = createHash('sha1')
        .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest('base64');
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
      );
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface AuditRow {
  kind: string;
  request_id: string;
  service?: string;
  path?: string;
  decision: string;
  rule_ids: string[];
  error_code?: string;
  bytes_in?: number;
  bytes_out?: number;
  redactions?: number;
  upstream_status?: number;
  websocket?: Record<string, unknown>;
  credential?: { name: string };
}

async function auditFor(node: TestNode, path: string): Promise<AuditRow[]> {
  const r = await node.admin<{ records: AuditRow[] }>('GET', '/v1/audit?limit=1000');
  return r.body.records.filter((x) => x.path === path);
}

/** Polls until `check` holds (no timing assertion: the test's timeout is the bound). */
async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await pause(20);
}

function signedHandshake(node: TestNode, agent: RawAgent, path: string) {
  return signRequest({
    method: 'GET',
    url: node.proxyUrl + path,
    headers: {},
    lease: agent.lease,
    key: agent.key,
    intent: 'websocket e2e',
  });
}

interface Opened {
  ws: WebSocket;
  messages: { data: string; binary: boolean }[];
  pings: string[];
  closed: Promise<{ code: number; reason: string }>;
}

/** Connects, resolving once open, or rejecting with the refusal's status and code. */
function connect(
  url: string,
  headers: Record<string, string>,
  options: { perMessageDeflate?: boolean } = {},
): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), { headers, ...options });
    const messages: Opened['messages'] = [];
    const pings: string[] = [];
    const closed = new Promise<{ code: number; reason: string }>((r) =>
      ws.once('close', (code, reason) => r({ code, reason: reason.toString() })),
    );
    ws.on('message', (d, binary) => messages.push({ data: d.toString(), binary }));
    ws.on('ping', (d) => pings.push(d.toString()));
    ws.once('open', () => resolve({ ws, messages, pings, closed }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`refused ${res.statusCode}`), {
            status: res.statusCode,
            code: res.headers['nexus-error'],
            body,
          }),
        ),
      );
    });
    ws.once('error', reject);
  });
}

async function refusal(p: Promise<Opened>): Promise<{ status?: number; code?: string }> {
  try {
    const o = await p;
    o.ws.terminate();
    return {};
  } catch (e) {
    return e as { status?: number; code?: string };
  }
}

/**
 * Review: the credential cut in two by a message boundary, each half alone in its own
 * message (or the second half in the close reason); the agent would join them.
 */
async function split(ws: WebSocket, inClose: boolean): Promise<void> {
  const sent = (text: string) =>
    new Promise<void>((r, j) => ws.send(text, (e) => (e ? j(e) : r())));
  const half = Math.floor(SECRET.length / 2);
  await sent('before');
  await sent(`a ${SECRET.slice(0, half)}`);
  if (inClose) {
    ws.close(4002, SECRET.slice(half));
    return;
  }
  await sent(`${SECRET.slice(half)} b`);
  await sent('after');
  ws.close(1000, 'done');
}

describe('WebSocket upgrades (issue 11)', () => {
  let node: TestNode;
  let up: WsUpstream;
  let forcing: { url: string; close(): Promise<void> };

  beforeAll(async () => {
    up = await startWsUpstream();
    forcing = await startForcingUpstream();
    node = await startNode({
      services: {
        chat: {
          upstream: up.url,
          auth: { type: 'bearer', credential: 'chat-key' },
          websocket: true,
          hosts: ['ws.chat.test'],
        },
        // Answers every handshake by selecting compression nobody offered.
        compress: {
          upstream: forcing.url,
          auth: { type: 'bearer', credential: 'chat-key' },
          websocket: true,
        },
        // Same upstream, not opted in to WebSockets.
        plain: { upstream: up.url, auth: { type: 'bearer', credential: 'chat-key' } },
      },
      agents: { bot: { roles: ['dev'] } },
      policies: [
        {
          id: 'dev-chat',
          allow: { roles: ['dev'], services: ['chat', 'plain', 'compress'], methods: ['GET'] },
        },
        { id: 'no-admin', deny: { services: ['chat'], paths: ['/admin/**'] } },
      ],
    });
    await node.setCredential('chat-key', { value: SECRET });
  });

  afterAll(async () => {
    await node?.stop();
    await up?.close();
    await forcing?.close();
  });

  it('an upstream that selects permessage-deflate nobody offered fails the handshake (502)', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/compress/x');
    expect(await refusal(connect(`${node.proxyUrl}/compress/x`, headers))).toMatchObject({
      status: 502,
      code: 'upstream_invalid',
    });
    await until(async () => (await auditFor(node, '/x')).some((r) => r.kind === 'outcome'));
    const outcome = (await auditFor(node, '/x')).find((r) => r.kind === 'outcome');
    expect(outcome).toMatchObject({ service: 'compress', error_code: 'upstream_invalid' });
  });

  it("the upstream's refusal of the handshake reaches the agent scrubbed", async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/refuse');
    const refused = (await refusal(connect(`${node.proxyUrl}/chat/refuse`, headers))) as {
      status?: number;
      code?: string;
      body?: string;
    };
    // The upstream's answer, not a refusal by Nexus: no Nexus-Error, the body scrubbed.
    expect(refused).toMatchObject({ status: 401, code: undefined });
    expect(JSON.parse(refused.body ?? '{}')).toEqual({ got: 'Bearer [REDACTED]' });
    await until(async () => (await auditFor(node, '/refuse')).some((r) => r.kind === 'outcome'));
    const outcome = (await auditFor(node, '/refuse')).find((r) => r.kind === 'outcome');
    expect(outcome).toMatchObject({ upstream_status: 401, redactions: 2 });
  });

  it('a hostile upstream cannot leak the credential: one frame, binary, fragments, TCP segments, ping, close reason', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/leak');
    // The client offers permessage-deflate (ws does by default); the upstream would accept.
    const o = await connect(`${node.proxyUrl}/chat/leak`, headers, { perMessageDeflate: true });
    expect(o.ws.extensions).toBe('');
    const closed = await o.closed;

    const texts = o.messages.map((m) => m.data);
    expect(texts).toEqual([
      'one [REDACTED] frame',
      'binary [REDACTED]',
      'frag [REDACTED] end',
      'tcp [REDACTED]',
      'last',
    ]);
    expect(o.messages[1]?.binary).toBe(true);
    expect(closed.code).toBe(4001);
    expect(closed.reason).toBe('bye [REDACTED]');
    // Pings are answered by Nexus: the upstream got its pong, the agent never saw the ping.
    expect(o.pings).toEqual([]);
    const conn = up.connections.find((c) => c.path === '/leak');
    expect(conn?.pongs).toEqual([SECRET]);
    // The upstream got the credential; no compression was offered to it.
    expect(conn?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(conn?.headers['sec-websocket-extensions']).toBeUndefined();
    expect(conn?.headers['workload-identity-token']).toBeUndefined();

    await until(async () => (await auditFor(node, '/leak')).some((r) => r.kind === 'outcome'));
    const rows = await auditFor(node, '/leak');
    const request = rows.find((r) => r.kind === 'request');
    const outcome = rows.find((r) => r.kind === 'outcome');
    expect(request).toMatchObject({
      decision: 'allow',
      websocket: {},
      credential: { name: 'chat-key' },
    });
    expect(outcome).toMatchObject({
      request_id: request?.request_id,
      upstream_status: 101,
      websocket: { messages_in: 0, messages_out: 5, close_code: 4001, closed_by: 'upstream' },
    });
    expect(outcome?.redactions).toBe(5);
    expect(JSON.stringify(rows)).not.toContain(SECRET);
  });

  for (const [path, where] of [
    ['/chat/split', 'two messages'],
    ['/chat/split-close', 'a message and the close reason'],
  ] as const) {
    it(`review: a secret split across ${where} never reaches the agent whole`, async () => {
      const agent = await rawAgent(node, 'bot');
      const headers = await signedHandshake(node, agent, path);
      const o = await connect(`${node.proxyUrl}${path}`, headers);
      const closed = await o.closed;
      const joined = o.messages.map((m) => m.data).join('') + closed.reason;
      expect(joined).not.toContain(SECRET);
      const half = Math.floor(SECRET.length / 2);
      // The messages before the boundary arrive; the second half never does.
      expect(o.messages.map((m) => m.data)).toEqual(['before', `a ${SECRET.slice(0, half)}`]);
      expect(joined).not.toContain(SECRET.slice(half));
      const p = path.slice('/chat'.length);
      await until(async () => (await auditFor(node, p)).some((r) => r.kind === 'outcome'));
      const outcome = (await auditFor(node, p)).find((r) => r.kind === 'outcome');
      expect(outcome).toMatchObject({ error_code: 'upstream_invalid', redactions: 1 });
      if (path === '/chat/split') expect(closed.code).toBe(1011);
      else expect(closed.code).toBe(4002);
    });
  }

  it('relays agent messages both ways and closes on the agent side', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/whoami');
    const o = await connect(`${node.proxyUrl}/chat/whoami`, headers);
    await until(() => o.messages.length === 1);
    expect(o.messages[0]?.data).toBe('auth:Bearer [REDACTED]');
    o.ws.send('ping-pong text');
    o.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await until(() => o.messages.length === 3);
    o.ws.close(1000, 'agent done');
    await o.closed;
    const conn = up.connections.filter((c) => c.path === '/whoami').at(-1);
    expect(conn?.received).toEqual([
      { data: 'ping-pong text', binary: false },
      { data: '\u0001\u0002\u0003', binary: true },
    ]);
    await until(async () => (await auditFor(node, '/whoami')).some((r) => r.kind === 'outcome'));
    const outcome = (await auditFor(node, '/whoami')).find((r) => r.kind === 'outcome');
    expect(outcome?.websocket).toMatchObject({
      messages_in: 2,
      messages_out: 3,
      close_code: 1000,
      closed_by: 'agent',
    });
    expect(outcome?.bytes_in).toBe('ping-pong text'.length + 3);
  });

  it('refuses an unsigned upgrade, a replayed one, a denied path and a service not opted in', async () => {
    const before = up.connections.length;
    expect(await refusal(connect(`${node.proxyUrl}/chat/whoami`, {}))).toMatchObject({
      status: 401,
      code: 'lease_missing',
    });

    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/whoami');
    const first = await connect(`${node.proxyUrl}/chat/whoami`, headers);
    first.ws.close();
    await first.closed;
    expect(await refusal(connect(`${node.proxyUrl}/chat/whoami`, headers))).toMatchObject({
      status: 401,
      code: 'replay_detected',
    });

    const admin = await signedHandshake(node, agent, '/chat/admin/x');
    expect(await refusal(connect(`${node.proxyUrl}/chat/admin/x`, admin))).toMatchObject({
      status: 403,
      code: 'policy_denied',
    });
    const plain = await signedHandshake(node, agent, '/plain/whoami');
    expect(await refusal(connect(`${node.proxyUrl}/plain/whoami`, plain))).toMatchObject({
      status: 403,
      code: 'policy_denied',
    });
    // Only the one allowed handshake reached the upstream.
    expect(up.connections.length).toBe(before + 1);
    const denied = (
      await node.admin<{ records: AuditRow[] }>('GET', '/v1/audit?limit=1000')
    ).body.records.find((r) => r.service === 'plain' && r.kind === 'request');
    expect(denied).toMatchObject({
      decision: 'deny',
      rule_ids: ['service:websocket'],
      error_code: 'policy_denied',
    });
  });

  it('closes an open stream when its lease is revoked', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/hold');
    const o = await connect(`${node.proxyUrl}/chat/hold`, headers);
    const conn = up.connections.filter((c) => c.path === '/hold').at(-1);
    const jti = decodeJwt(agent.lease).jti as string;
    const revoked = await node.cli(['lease', 'revoke', '--', jti]);
    expect(revoked.code).toBe(0);
    const closed = await o.closed;
    expect(closed).toEqual({ code: 1008, reason: 'lease_revoked' });
    await until(() => conn?.closed === true);
    await until(async () => (await auditFor(node, '/hold')).some((r) => r.kind === 'outcome'));
    const outcome = (await auditFor(node, '/hold')).find((r) => r.kind === 'outcome');
    expect(outcome).toMatchObject({
      error_code: 'lease_revoked',
      websocket: { close_code: 1008, closed_by: 'nexus' },
    });
  });

  it('nexus run: path mode, ws:// over HTTP_PROXY and wss:// in an intercepted CONNECT', async () => {
    const script = [
      `echo "--- direct"; timeout 10 node ${AGENT} direct "$(echo "$NEXUS_PROXY" | sed s/^http/ws/)/chat/whoami"`,
      `echo "--- connect"; timeout 10 node ${AGENT} connect wss://ws.chat.test/whoami`,
      `echo "--- absolute"; timeout 10 node ${AGENT} absolute ws://ws.chat.test/whoami`,
      `echo "--- unowned"; timeout 10 node ${AGENT} absolute ws://unowned.test/whoami`,
      // Refused by the node (policy): the child gets the node's problem.
      `echo "--- denied"; timeout 10 node ${AGENT} direct "$(echo "$NEXUS_PROXY" | sed s/^http/ws/)/chat/admin/x"`,
      // Cross-site WebSocket hijacking: a page the user opens cannot use the sidecar.
      `echo "--- browser"; timeout 10 node ${AGENT} browser "$(echo "$NEXUS_PROXY" | sed s/^http/ws/)/chat/whoami"`,
    ].join('\n');
    const before = up.connections.length;
    const r = await node.runAgent('bot', ['sh', '-c', script]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const parts: Record<
      string,
      {
        messages: string[];
        extensions?: string;
        close?: { code: number };
        status?: number;
        code?: string;
      }
    > = {};
    for (const part of r.stdout.split(/^--- /m).slice(1)) {
      const nl = part.indexOf('\n');
      parts[part.slice(0, nl).trim()] = JSON.parse(part.slice(nl + 1).trim());
    }
    for (const mode of ['direct', 'connect']) {
      expect(parts[mode]).toMatchObject({
        messages: ['auth:Bearer [REDACTED]', 'hello'],
        extensions: '',
        close: { code: 1000 },
      });
    }
    expect(parts.absolute).toMatchObject({ status: 101, messages: ['auth:Bearer [REDACTED]'] });
    expect(parts.unowned).toMatchObject({ status: 403, code: 'host_unowned' });
    expect(parts.browser).toMatchObject({ status: 403, messages: [] });
    expect(parts.denied).toMatchObject({ status: 403, code: 'policy_denied', messages: [] });
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stderr).not.toContain(SECRET);
    // Three handshakes reached the upstream; the unowned host, the denied path and the
    // browser's none.
    expect(up.connections.length).toBe(before + 3);
    const viaRun = up.connections.slice(-3);
    for (const c of viaRun) expect(c.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('closes an open stream when a reload takes away the rule that allowed it', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/hold');
    const o = await connect(`${node.proxyUrl}/chat/hold`, headers);
    const original = await readFile(node.configPath, 'utf8');
    const config = parse(original) as { policies: unknown[] };
    config.policies = [
      { id: 'dev-plain', allow: { roles: ['dev'], services: ['plain'], methods: ['GET'] } },
    ];
    await writeFile(node.configPath, stringify(config));
    try {
      expect((await node.cli(['reload'])).code).toBe(0);
      expect(await o.closed).toEqual({ code: 1008, reason: 'policy_denied' });
    } finally {
      await writeFile(node.configPath, original);
      expect((await node.cli(['reload'])).code).toBe(0);
    }
  });
});

describe('WebSocket upgrades: lease expiry and the message bound (issue 11)', () => {
  let node: TestNode;
  let up: WsUpstream;

  beforeAll(async () => {
    up = await startWsUpstream();
    node = await startNode({
      services: {
        chat: {
          upstream: up.url,
          auth: { type: 'bearer', credential: 'chat-key' },
          websocket: true,
        },
      },
      agents: { bot: { roles: ['dev'] } },
      policies: [{ id: 'dev-chat', allow: { roles: ['dev'], services: ['chat'] } }],
      overrides: { authority: { lease_ttl: '5s' }, proxy: { max_body: '4KiB' } },
    });
    await node.setCredential('chat-key', { value: SECRET });
  });

  afterAll(async () => {
    await node?.stop();
    await up?.close();
  });

  it('closes an open stream when its lease expires', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/hold');
    const o = await connect(`${node.proxyUrl}/chat/hold`, headers);
    expect(await o.closed).toEqual({ code: 1008, reason: 'lease_expired' });
    await until(async () => (await auditFor(node, '/hold')).some((r) => r.kind === 'outcome'));
    const outcome = (await auditFor(node, '/hold')).find((r) => r.kind === 'outcome');
    expect(outcome).toMatchObject({
      error_code: 'lease_expired',
      websocket: { closed_by: 'nexus' },
    });
  });

  it('a node that stops closes its open streams (1001) and keeps their outcome records', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/hold');
    const o = await connect(`${node.proxyUrl}/chat/hold`, headers);
    const conn = up.connections.filter((c) => c.path === '/hold').at(-1);
    const stopped = node.restart();
    expect(await o.closed).toEqual({ code: 1001, reason: 'Nexus is stopping' });
    await stopped;
    expect(conn?.closed).toBe(true);
    const outcome = (await auditFor(node, '/hold')).find(
      (r) => r.kind === 'outcome' && r.websocket?.close_code === 1001,
    );
    expect(outcome).toMatchObject({ upstream_status: 101, websocket: { closed_by: 'nexus' } });
    // The records with their `websocket` member keep the audit chain verifiable.
    const verify = await node.cli(['audit', 'verify']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('an agent message over the bound closes the stream (1009) and never reaches the upstream', async () => {
    const agent = await rawAgent(node, 'bot');
    const headers = await signedHandshake(node, agent, '/chat/whoami');
    const o = await connect(`${node.proxyUrl}/chat/whoami`, headers);
    o.ws.send('small');
    await until(() => o.messages.length === 2);
    o.ws.send('x'.repeat(8 * 1024));
    expect((await o.closed).code).toBe(1009);
    const conn = up.connections.filter((c) => c.path === '/whoami').at(-1);
    expect(conn?.received).toEqual([{ data: 'small', binary: false }]);
    await until(() => conn?.closed === true);
  });
});
