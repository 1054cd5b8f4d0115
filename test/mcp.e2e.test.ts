/**
 * Issue 12 end to end: Nexus as the gateway between agents and MCP servers. A spawned
 * `nexus up`; real MCP servers on loopback (the official SDK's, on Streamable HTTP, SSE
 * and JSON answers; a 2026-07-28 one) that record the credential they get and try to
 * reflect it; the SDK's MCP client calling through the proxy, signed by the Nexus SDK
 * (`mcpFetch`); raw signed requests for what no client sends.
 */
import { writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  StdioClientTransport,
  getDefaultEnvironment,
} from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { signRequest } from '@nexus-proxy/protocol';
import { mcpFetch, type NexusAgent } from '@nexus-proxy/sdk';
import { rawAgent, type RawAgent } from './helpers/agents.js';
import { startMcpServer, startModernMcpServer, type TestMcpServer } from './helpers/mcp-server.js';
import { NEXUS_BIN, REPO, startNode, type TestNode } from './helpers/node.js';

const SECRET = 'mcp_e2e_secret_token_0123456789abcdefXYZ';
const MODERN = '2026-07-28';
const LEGACY = '2025-11-25';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function send(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string },
) {
  const u = new URL(url);
  return new Promise<Raw>((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: init.method ?? 'POST',
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
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** Signs a POST of `body` to `/{service}/` as the raw agent. */
async function signedPost(
  node: TestNode,
  agent: RawAgent,
  service: string,
  body: string,
  headers: Record<string, string> = {},
  intent = 'mcp e2e',
): Promise<{ url: string; headers: Record<string, string>; body: string }> {
  const url = `${node.proxyUrl}/${service}/`;
  const h: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    ...headers,
  };
  const added = await signRequest({
    method: 'POST',
    url,
    headers: h,
    body: new TextEncoder().encode(body),
    lease: agent.lease,
    key: agent.key,
    intent,
  });
  return { url, headers: { ...h, ...added }, body };
}

async function post(
  node: TestNode,
  agent: RawAgent,
  service: string,
  message: unknown,
  headers: Record<string, string> = {},
): Promise<Raw> {
  const body = typeof message === 'string' ? message : JSON.stringify(message);
  const s = await signedPost(node, agent, service, body, headers);
  return send(s.url, { headers: s.headers, body: s.body });
}

/** The JSON-RPC message in a JSON or SSE answer. */
function rpc(r: Raw): {
  id?: unknown;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: { code: string } };
} {
  const ct = String(r.headers['content-type'] ?? '');
  if (ct.startsWith('text/event-stream')) {
    const data = r.text
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trim())
      .filter((d) => d !== '');
    return JSON.parse(data[data.length - 1] ?? '{}') as ReturnType<typeof rpc>;
  }
  return JSON.parse(r.text) as ReturnType<typeof rpc>;
}

const modernCall = (id: number, method: string, params: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0',
  id,
  method,
  params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } },
});

describe('MCP through the Nexus gateway (issue 12)', () => {
  let mcp: TestMcpServer;
  let modern: TestMcpServer;
  let node: TestNode;
  let agent: NexusAgent;
  let raw: RawAgent;

  beforeAll(async () => {
    mcp = await startMcpServer();
    modern = await startModernMcpServer();
    const auth = { type: 'bearer', credential: 'mcp-token' };
    node = await startNode({
      services: {
        'tools-sse': { kind: 'mcp', upstream: `${mcp.url}/sse`, auth },
        'tools-json': { kind: 'mcp', upstream: `${mcp.url}/json`, auth },
        'tools-session': { kind: 'mcp', upstream: `${mcp.url}/session`, auth },
        modern: { kind: 'mcp', upstream: `${modern.url}/mcp`, auth },
      },
      agents: { bot: { roles: ['tools'] } },
      policies: [
        // Lets the agent speak MCP to the services (initialize, lists, ping): no tool.
        {
          id: 'mcp-session',
          allow: {
            roles: ['tools'],
            services: ['tools-sse', 'tools-json', 'tools-session', 'modern'],
          },
        },
        {
          id: 'mcp-tools',
          allow: {
            roles: ['tools'],
            mcp: {
              tools: ['add', 'whoami', 'search_*', 'fail'],
              resources: ['file:///public/*'],
              prompts: ['greet'],
            },
          },
        },
        { id: 'no-secrets', deny: { mcp: { tools: ['search_secret*'] } } },
      ],
    });
    await node.setCredential('mcp-token', { value: SECRET });
    agent = await node.enroll('bot');
    raw = await rawAgent(node, 'bot');
  }, 60_000);

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await mcp?.close();
    await modern?.close();
  });

  for (const service of ['tools-sse', 'tools-json']) {
    describe(`an unmodified MCP client (SDK, ${service})`, () => {
      let client: Client;

      beforeAll(async () => {
        client = new Client({ name: 'e2e-client', version: '1.0.0' });
        const transport = new StreamableHTTPClientTransport(
          new URL(`${node.proxyUrl}/${service}/`),
          {
            fetch: mcpFetch(agent, service),
          },
        );
        await client.connect(transport);
      });

      afterAll(async () => {
        await client?.close();
      });

      it('lists only the tools, resources and prompts policy allows', async () => {
        const tools = await client.listTools();
        expect(tools.tools.map((t) => t.name).sort()).toEqual([
          'add',
          'fail',
          'search_docs',
          'whoami',
        ]);
        const resources = await client.listResources();
        expect(resources.resources.map((r) => r.uri)).toEqual(['file:///public/readme']);
        const prompts = await client.listPrompts();
        expect(prompts.prompts.map((p) => p.name)).toEqual(['greet']);
      });

      it('calls an allowed tool, and the upstream gets the credential', async () => {
        const before = mcp.seen.length;
        const r = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
        expect(r.content).toEqual([{ type: 'text', text: '42' }]);
        const got = mcp.seen.slice(before).find((s) => s.message?.method === 'tools/call');
        expect(got?.authorization).toBe(`Bearer ${SECRET}`);
        expect(got?.path).toBe(`/${service.slice('tools-'.length)}`);
      });

      it('never lets the credential a tool reflects reach the agent', async () => {
        const r = await client.callTool({ name: 'whoami', arguments: {} });
        const text = JSON.stringify(r);
        expect(text).toContain('you called me with');
        expect(text).not.toContain(SECRET);
        expect(text).toContain('[REDACTED]');
      });

      it('refuses a denied tool with a JSON-RPC error naming the code; the upstream never sees it', async () => {
        const calls = mcp.calls().length;
        for (const name of ['delete_repo', 'search_secrets']) {
          const err = await client
            .callTool({ name, arguments: { repo: 'x', q: 'x' } })
            .catch((e: unknown) => e);
          expect(err).toBeInstanceOf(McpError);
          expect((err as McpError).code).toBe(-32010);
          expect((err as McpError).message).toContain('policy_denied');
        }
        await expect(client.readResource({ uri: 'file:///private/keys' })).rejects.toThrow(
          /policy_denied/,
        );
        await expect(client.getPrompt({ name: 'admin_prompt' })).rejects.toThrow(/policy_denied/);
        expect(mcp.calls().length).toBe(calls);
        expect(mcp.seen.some((s) => s.message?.params?.uri === 'file:///private/keys')).toBe(false);
      });

      it('reads an allowed resource and gets an allowed prompt', async () => {
        const r = await client.readResource({ uri: 'file:///public/readme' });
        expect(r.contents[0]).toMatchObject({ text: 'hello' });
        const p = await client.getPrompt({ name: 'greet', arguments: { who: 'ada' } });
        expect(JSON.stringify(p.messages)).toContain('greet ada');
      });
    });
  }

  it('keeps a 2025-11-25 session: Mcp-Session-Id both ways, the GET stream, DELETE at the end', async () => {
    const client = new Client({ name: 'session-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(
      new URL(`${node.proxyUrl}/tools-session/`),
      {
        fetch: mcpFetch(agent, 'tools-session'),
      },
    );
    await client.connect(transport);
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(mcp.sessions?.()).toBe(1);
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain('delete_repo');
    const r = await client.callTool({ name: 'add', arguments: { a: 1, b: 1 } });
    expect(r.content).toEqual([{ type: 'text', text: '2' }]);
    const inSession = mcp.seen.filter((s) => s.path === '/session');
    expect(inSession.some((s) => s.httpMethod === 'GET')).toBe(true);
    expect(
      new Set(
        inSession
          .filter((s) => s.headers['mcp-session-id'])
          .map((s) => s.headers['mcp-session-id']),
      ).size,
    ).toBe(1);
    await transport.terminateSession();
    await client.close();
    expect(mcp.sessions?.()).toBe(0);
  });

  it('refuses a header that disagrees with the body (a tools/call of a denied tool named as an allowed one)', async () => {
    const calls = mcp.calls().length;
    const call = {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'delete_repo', arguments: {} },
    };
    const byName = await post(node, raw, 'tools-json', call, {
      'mcp-method': 'tools/call',
      'mcp-name': 'add',
    });
    expect(byName.status).toBe(400);
    expect(byName.headers['nexus-error']).toBe('mcp_header_mismatch');
    expect(rpc(byName)).toMatchObject({
      id: 1,
      error: { code: -32020, data: { code: 'mcp_header_mismatch' } },
    });
    const byMethod = await post(
      node,
      raw,
      'tools-json',
      { ...call, params: { name: 'add', arguments: { a: 1, b: 1 } } },
      {
        'mcp-method': 'tools/list',
      },
    );
    expect(byMethod.status).toBe(400);
    expect(rpc(byMethod).error?.code).toBe(-32020);
    expect(mcp.calls().length).toBe(calls);
    // The Base64 form of a matching name is accepted.
    const b64 = await post(
      node,
      raw,
      'tools-json',
      { ...call, params: { name: 'add', arguments: { a: 1, b: 2 } } },
      {
        'mcp-method': 'tools/call',
        'mcp-name': `=?base64?${Buffer.from('add').toString('base64')}?=`,
      },
    );
    expect(b64.status).toBe(200);
    expect(JSON.stringify(rpc(b64).result)).toContain('"3"');
  });

  it('refuses batches, malformed JSON and duplicate keys with JSON-RPC errors, before policy', async () => {
    const before = mcp.seen.length;
    const batch = await post(node, raw, 'tools-json', [
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'delete_repo' } },
    ]);
    expect(batch.status).toBe(400);
    expect(rpc(batch)).toMatchObject({
      id: null,
      error: { code: -32600, data: { code: 'mcp_invalid' } },
    });
    const bad = await post(node, raw, 'tools-json', '{"jsonrpc":"2.0","id":1,');
    expect(rpc(bad).error?.code).toBe(-32700);
    const dup = await post(
      node,
      raw,
      'tools-json',
      '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","name":"delete_repo"}}',
    );
    expect(dup.status).toBe(400);
    expect(rpc(dup).error?.data?.code).toBe('mcp_invalid');
    // A denied tool sent as a notification, or under a method spelling a lenient server
    // might still route, is refused too.
    const note = await post(node, raw, 'tools-json', {
      jsonrpc: '2.0',
      method: 'tools/call',
      params: { name: 'delete_repo', arguments: { repo: 'x' } },
    });
    expect(note.status).toBe(403);
    expect(note.headers['nexus-error']).toBe('policy_denied');
    const spelled = await post(node, raw, 'tools-json', {
      jsonrpc: '2.0',
      id: 5,
      method: 'Tools/Call',
      params: { name: 'delete_repo' },
    });
    expect(rpc(spelled)).toMatchObject({ id: 5, error: { data: { code: 'policy_denied' } } });
    const tasks = await post(node, raw, 'tools-json', {
      jsonrpc: '2.0',
      id: 6,
      method: 'tasks/list',
    });
    expect(tasks.headers['nexus-error']).toBe('policy_denied');
    const notRpc = await post(node, raw, 'tools-json', { id: 4, method: 'tools/list' });
    expect(rpc(notRpc).error?.data?.code).toBe('mcp_invalid');
    expect(mcp.seen.length).toBe(before);
  });

  it('reaches the MCP endpoint only: another path, a resumed stream, PUT are refused', async () => {
    const before = mcp.seen.length;
    const url = `${node.proxyUrl}/tools-json/admin`;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const h = { 'content-type': 'application/json' };
    const added = await signRequest({
      method: 'POST',
      url,
      headers: h,
      body: new TextEncoder().encode(body),
      lease: raw.lease,
      key: raw.key,
      intent: 'x',
    });
    const other = await send(url, { headers: { ...h, ...added }, body });
    expect(other.headers['nexus-error']).toBe('mcp_invalid');
    const getUrl = `${node.proxyUrl}/tools-sse/`;
    const gh = { 'last-event-id': '1', accept: 'text/event-stream' };
    const g = await signRequest({
      method: 'GET',
      url: getUrl,
      headers: gh,
      lease: raw.lease,
      key: raw.key,
      intent: 'x',
    });
    const resumed = await send(getUrl, { method: 'GET', headers: { ...gh, ...g } });
    expect(resumed.headers['nexus-error']).toBe('mcp_invalid');
    expect(mcp.seen.length).toBe(before);
  });

  it('refuses a replayed and a tampered call; neither reaches the upstream', async () => {
    const calls = mcp.calls().length;
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'add', arguments: { a: 1, b: 1 } },
    });
    const s = await signedPost(node, raw, 'tools-json', body);
    const first = await send(s.url, { headers: s.headers, body: s.body });
    expect(first.status).toBe(200);
    const again = await send(s.url, { headers: s.headers, body: s.body });
    expect(again.status).toBe(401);
    expect(again.headers['nexus-error']).toBe('replay_detected');
    const t = await signedPost(node, raw, 'tools-json', body);
    const tampered = await send(t.url, {
      headers: t.headers,
      body: body.replace('"add"', '"delete_repo"').replace('"a":1,"b":1', '"repo":"x"'),
    });
    expect(tampered.headers['nexus-error']).toBe('digest_mismatch');
    expect(mcp.calls().length).toBe(calls + 1);
  });

  describe(`the ${MODERN} revision (stateless, request metadata headers)`, () => {
    const headers = (method: string, name?: string): Record<string, string> => ({
      'mcp-protocol-version': MODERN,
      'mcp-method': method,
      ...(name === undefined ? {} : { 'mcp-name': name }),
    });

    it('discovers, lists (filtered) and calls with the headers the revision requires', async () => {
      const d = await post(
        node,
        raw,
        'modern',
        modernCall(1, 'server/discover'),
        headers('server/discover'),
      );
      expect(rpc(d).result).toMatchObject({ supportedVersions: [MODERN] });
      const l = await post(node, raw, 'modern', modernCall(2, 'tools/list'), headers('tools/list'));
      expect(l.status).toBe(200);
      expect((rpc(l).result?.tools as { name: string }[]).map((t) => t.name)).toEqual([
        'add',
        'whoami',
      ]);
      const c = await post(
        node,
        raw,
        'modern',
        modernCall(3, 'tools/call', { name: 'add', arguments: { a: 5, b: 6 } }),
        headers('tools/call', 'add'),
      );
      expect(JSON.stringify(rpc(c).result)).toContain('"11"');
      const w = await post(
        node,
        raw,
        'modern',
        modernCall(4, 'tools/call', { name: 'whoami' }),
        headers('tools/call', 'whoami'),
      );
      expect(w.text).not.toContain(SECRET);
      expect(modern.seen.at(-1)?.authorization).toBe(`Bearer ${SECRET}`);
      const denied = await post(
        node,
        raw,
        'modern',
        modernCall(5, 'tools/call', { name: 'delete_repo' }),
        headers('tools/call', 'delete_repo'),
      );
      expect(denied.status).toBe(403);
      expect(rpc(denied)).toMatchObject({
        id: 5,
        error: { code: -32010, data: { code: 'policy_denied' } },
      });
      expect(modern.calls()).not.toContain('delete_repo');
    });

    it('refuses a missing Mcp-Method or Mcp-Name, and a body version that disagrees', async () => {
      const before = modern.seen.length;
      const noMethod = await post(node, raw, 'modern', modernCall(1, 'tools/list'), {
        'mcp-protocol-version': MODERN,
      });
      expect(rpc(noMethod).error?.code).toBe(-32020);
      const noName = await post(
        node,
        raw,
        'modern',
        modernCall(2, 'tools/call', { name: 'add' }),
        headers('tools/call'),
      );
      expect(rpc(noName).error?.code).toBe(-32020);
      const wrongVersion = await post(
        node,
        raw,
        'modern',
        {
          ...modernCall(3, 'tools/list'),
          params: { _meta: { 'io.modelcontextprotocol/protocolVersion': LEGACY } },
        },
        headers('tools/list'),
      );
      expect(wrongVersion.status).toBe(400);
      expect(rpc(wrongVersion).error?.data?.code).toBe('mcp_header_mismatch');
      expect(modern.seen.length).toBe(before);
    });

    it(`accepts ${LEGACY} requests without the newer headers (not required there)`, async () => {
      const r = await post(
        node,
        raw,
        'tools-json',
        { jsonrpc: '2.0', id: 7, method: 'tools/list' },
        { 'mcp-protocol-version': LEGACY },
      );
      expect(r.status).toBe(200);
      expect((rpc(r).result?.tools as unknown[]).length).toBe(4);
    });
  });

  describe('nexus mcp (stdio), launched by the SDK stdio client', () => {
    async function launch(services: string[], extra: string[] = []): Promise<Client> {
      const enrolled = await node.cli(['agent', 'enroll', 'bot']);
      expect(enrolled.code).toBe(0);
      const client = new Client({ name: 'stdio-client', version: '1.0.0' });
      const args = [NEXUS_BIN, 'mcp', '--authority', node.proxyUrl, ...extra];
      for (const s of services) args.push('--service', s);
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args,
          // Agent rights only: the enrollment token, no operator token, no node files.
          env: { ...getDefaultEnvironment(), NEXUS_ENROLLMENT_TOKEN: enrolled.stdout.trim() },
          stderr: 'pipe',
        }),
      );
      return client;
    }

    it('relays one service: filtered tools, the intent from the tool call, no credential', async () => {
      const client = await launch(['tools-sse'], ['--intent-arg', 'why']);
      try {
        const tools = await client.listTools();
        expect(tools.tools.map((t) => t.name).sort()).toEqual([
          'add',
          'fail',
          'search_docs',
          'whoami',
        ]);
        const add = tools.tools.find((t) => t.name === 'add');
        expect(Object.keys(add?.inputSchema.properties ?? {})).toContain('why');
        const before = mcp.seen.length;
        const r = await client.callTool({
          name: 'add',
          arguments: { a: 1, b: 2, why: 'sum the invoice lines' },
        });
        expect(r.content).toEqual([{ type: 'text', text: '3' }]);
        const sent = mcp.seen.slice(before).find((s) => s.message?.method === 'tools/call');
        expect(JSON.stringify(sent?.message)).not.toContain('"why"');
        const who = await client.callTool({ name: 'whoami', arguments: {} });
        expect(JSON.stringify(who)).not.toContain(SECRET);
        const denied = await client
          .callTool({ name: 'delete_repo', arguments: { repo: 'x', why: 'cleanup' } })
          .catch((e: unknown) => e);
        expect(String((denied as Error).message)).toContain('policy_denied');
      } finally {
        await client.close();
      }
      const q = await node.cli(['audit', 'query', '--json', '--limit', '1000']);
      const records = JSON.parse(q.stdout) as Record<string, unknown>[];
      expect(records).toContainEqual(
        expect.objectContaining({
          kind: 'request',
          decision: 'allow',
          intent: 'sum the invoice lines',
          mcp: expect.objectContaining({ name: 'add' }) as unknown,
        }),
      );
      expect(records).toContainEqual(
        expect.objectContaining({ decision: 'deny', intent: 'cleanup' }),
      );
    });

    it('offers several services as {service}__{name}', async () => {
      const client = await launch(['tools-sse', 'tools-json'], ['--intent', 'stdio e2e']);
      try {
        const names = (await client.listTools()).tools.map((t) => t.name);
        expect(names).toContain('tools-sse__add');
        expect(names).toContain('tools-json__whoami');
        expect(names.some((n) => n.includes('delete_repo'))).toBe(false);
        const r = await client.callTool({ name: 'tools-json__add', arguments: { a: 20, b: 22 } });
        expect(r.content).toEqual([{ type: 'text', text: '42' }]);
        const p = await client.listPrompts();
        expect(p.prompts.map((x) => x.name).sort()).toEqual([
          'tools-json__greet',
          'tools-sse__greet',
        ]);
        const res = await client
          .readResource({ uri: 'file:///public/readme' })
          .catch(() => undefined);
        expect(res).toBeUndefined(); // not listed yet
        await client.listResources();
        const read = await client.readResource({ uri: 'file:///public/readme' });
        expect(read.contents[0]).toMatchObject({ text: 'hello' });
      } finally {
        await client.close();
      }
    });
  });

  it('nexus run: an unmodified MCP client in the child reaches the service through the sidecar', async () => {
    const sdk = join(REPO, 'node_modules/@modelcontextprotocol/sdk/dist/esm');
    const script = join(node.dir, 'mcp-child.mjs');
    await writeFile(
      script,
      [
        `import { Client } from '${sdk}/client/index.js';`,
        `import { StreamableHTTPClientTransport } from '${sdk}/client/streamableHttp.js';`,
        "const client = new Client({ name: 'child', version: '1.0.0' });",
        'await client.connect(new StreamableHTTPClientTransport(new URL(process.env.NEXUS_PROXY + "/tools-json/")));',
        'const tools = (await client.listTools()).tools.map((t) => t.name).sort();',
        "const sum = await client.callTool({ name: 'add', arguments: { a: 4, b: 5 } });",
        "const who = await client.callTool({ name: 'whoami', arguments: {} });",
        "const denied = await client.callTool({ name: 'delete_repo', arguments: { repo: 'x' } }).then(() => 'allowed', (e) => e.code + ' ' + e.message);",
        'console.log(JSON.stringify({ tools, sum: sum.content, who: who.content, denied, env: Object.keys(process.env).filter((k) => k.startsWith("NEXUS_")) }));',
        'await client.close();',
      ].join('\n'),
    );
    const calls = mcp.calls().filter((c) => c === 'delete_repo').length;
    const r = await node.runAgent('bot', [process.execPath, script], { args: ['--agent', 'bot'] });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    expect(out.tools).toEqual(['add', 'fail', 'search_docs', 'whoami']);
    expect(out.sum).toEqual([{ type: 'text', text: '9' }]);
    expect(JSON.stringify(out.who)).toContain('[REDACTED]');
    expect(String(out.denied)).toMatch(/^-32010 .*policy_denied/);
    expect(out.env).toEqual(['NEXUS_PROXY']);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    expect(mcp.calls().filter((c) => c === 'delete_repo').length).toBe(calls);
  });

  it('nexus policy explain decides an MCP call offline, as the proxy does', async () => {
    const explain = (tool: string) =>
      node.cli([
        'policy',
        'explain',
        '--agent',
        'bot',
        '--service',
        'tools-sse',
        '--method',
        'POST',
        '--path',
        '/',
        '--mcp',
        'tools/call',
        '--mcp-name',
        tool,
        '--json',
      ]);
    const allowed = await explain('search_docs');
    expect(allowed.code).toBe(0);
    expect(JSON.parse(allowed.stdout)).toMatchObject({
      decision: 'allow',
      rule_ids: ['mcp-tools'],
    });
    const denied = await explain('search_secrets');
    expect(denied.code).toBe(3);
    expect(JSON.parse(denied.stdout)).toMatchObject({ decision: 'deny', rule_ids: ['no-secrets'] });
    expect((await explain('delete_repo')).code).toBe(3);
  });

  it('audits every tool call with method, tool, argument digest, intent, decision and outcome', async () => {
    const q = await node.cli(['audit', 'query', '--json', '--limit', '1000']);
    expect(q.code).toBe(0);
    const records = JSON.parse(q.stdout) as Record<string, unknown>[];
    const mcpOf = (r: Record<string, unknown>) => (r.mcp ?? {}) as Record<string, unknown>;
    const add = records.find(
      (r) =>
        r.kind === 'request' &&
        r.service === 'tools-sse' &&
        mcpOf(r).name === 'add' &&
        r.intent === 'tools/call add',
    );
    expect(add).toMatchObject({
      decision: 'allow',
      intent: 'tools/call add',
      rule_ids: ['mcp-tools'],
      mcp: { rpc: 'request', method: 'tools/call', name: 'add' },
    });
    expect(String(mcpOf(add ?? {}).args_digest)).toMatch(/^sha-256:[0-9a-f]{64}$/);
    const outcome = records.find((r) => r.kind === 'outcome' && r.request_id === add?.request_id);
    expect(outcome).toMatchObject({ upstream_status: 200, mcp: { outcome: 'result' } });
    const denied = records.find(
      (r) => r.service === 'tools-sse' && mcpOf(r).name === 'delete_repo' && r.intent !== 'cleanup',
    );
    expect(denied).toMatchObject({
      decision: 'deny',
      error_code: 'policy_denied',
      intent: 'tools/call delete_repo',
    });
    const byRule = records.find((r) => mcpOf(r).name === 'search_secrets');
    expect(byRule).toMatchObject({ decision: 'deny', rule_ids: ['no-secrets'] });
    const list = records.find(
      (r) => r.kind === 'outcome' && r.service === 'tools-sse' && mcpOf(r).method === 'tools/list',
    );
    expect(mcpOf(list ?? {}).filtered).toBe(2);
    expect(JSON.stringify(records)).not.toContain(SECRET);
    const verify = await node.cli(['audit', 'verify']);
    expect(verify.code).toBe(0);
  });
});
