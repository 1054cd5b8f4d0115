/**
 * A real MCP server on loopback for end-to-end tests (issue 12), built with the official
 * SDK (`@modelcontextprotocol/sdk`) on Streamable HTTP, stateless: `/sse` answers with SSE
 * streams, `/json` with JSON bodies. It records every request it receives (method, the
 * `Authorization` header, the JSON-RPC message) and has a tool, `whoami`, that tries to
 * reflect the credential it received back to the agent.
 *
 * `startModernMcpServer` answers the 2026-07-28 revision (stateless, request metadata in
 * `_meta`) for the few methods the tests use; the SDK speaks 2025-11-25 at most.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface McpSeen {
  readonly path: string;
  readonly httpMethod: string;
  readonly authorization: string | undefined;
  readonly headers: IncomingMessage['headers'];
  readonly message: { method?: string; params?: { name?: string; uri?: string } } | undefined;
}

export interface TestMcpServer {
  readonly url: string;
  readonly seen: McpSeen[];
  /** Tool calls received, by tool name. */
  calls(): string[];
  /** Open sessions (`/session`, stateful mode). */
  sessions?(): number;
  close(): Promise<void>;
}

function buildServer(): McpServer {
  const server = new McpServer({ name: 'nexus-test-tools', version: '1.0.0' });
  server.registerTool(
    'add',
    { description: 'adds two numbers', inputSchema: { a: z.number(), b: z.number() } },
    ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  server.registerTool('whoami', { description: 'tells what credential it got' }, (extra) => ({
    content: [
      {
        type: 'text',
        text: `you called me with ${String(extra.requestInfo?.headers.authorization)}`,
      },
    ],
  }));
  server.registerTool('search_docs', { inputSchema: { q: z.string() } }, ({ q }) => ({
    content: [{ type: 'text', text: `docs about ${q}` }],
  }));
  server.registerTool('search_secrets', { inputSchema: { q: z.string() } }, () => ({
    content: [{ type: 'text', text: 'the launch codes' }],
  }));
  server.registerTool('delete_repo', { inputSchema: { repo: z.string() } }, () => ({
    content: [{ type: 'text', text: 'deleted' }],
  }));
  server.registerTool('fail', {}, () => ({
    content: [{ type: 'text', text: 'it broke' }],
    isError: true,
  }));
  server.registerResource('readme', 'file:///public/readme', {}, (uri) => ({
    contents: [{ uri: uri.href, text: 'hello' }],
  }));
  server.registerResource('keys', 'file:///private/keys', {}, (uri) => ({
    contents: [{ uri: uri.href, text: 'private keys' }],
  }));
  server.registerPrompt('greet', { argsSchema: { who: z.string() } }, ({ who }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `greet ${who}` } }],
  }));
  server.registerPrompt('admin_prompt', {}, () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'be root' } }],
  }));
  return server;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : (JSON.parse(text) as unknown);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closer(server: Server) {
  return () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
}

function callsOf(seen: McpSeen[]) {
  return () =>
    seen
      .filter((s) => s.message?.method === 'tools/call')
      .map((s) => s.message?.params?.name ?? '');
}

export async function startMcpServer(): Promise<TestMcpServer> {
  const seen: McpSeen[] = [];
  // `/session`: the 2025 revisions' stateful mode (Mcp-Session-Id, the GET stream, DELETE).
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req, res) => {
    void (async () => {
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      seen.push({
        path: req.url ?? '',
        httpMethod: req.method ?? '',
        authorization: req.headers.authorization,
        headers: req.headers,
        message: body as McpSeen['message'],
      });
      if (req.url?.startsWith('/session') === true) {
        const id = req.headers['mcp-session-id'];
        let transport = typeof id === 'string' ? sessions.get(id) : undefined;
        if (transport === undefined) {
          if (typeof id === 'string') {
            res.writeHead(404).end();
            return;
          }
          const t = new StreamableHTTPServerTransport({
            sessionIdGenerator: () => randomUUID(),
            onsessioninitialized: (sid) => void sessions.set(sid, t),
          });
          t.onclose = () => {
            if (t.sessionId !== undefined) sessions.delete(t.sessionId);
          };
          await buildServer().connect(t);
          transport = t;
        }
        await transport.handleRequest(req, res, body);
        return;
      }
      const server = buildServer();
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: req.url?.startsWith('/json') === true,
      });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch(() => res.destroy());
  });
  const url = await listen(http);
  return {
    url,
    seen,
    calls: callsOf(seen),
    sessions: () => sessions.size,
    close: closer(http),
  };
}

/** Tools of the 2026-07-28 server. */
const MODERN_TOOLS = ['add', 'whoami', 'delete_repo'];

export async function startModernMcpServer(): Promise<TestMcpServer> {
  const seen: McpSeen[] = [];
  const http = createServer((req, res) => {
    void (async () => {
      const msg = (await readJson(req)) as {
        id: number;
        method: string;
        params?: { name?: string; arguments?: { a?: number; b?: number } };
      };
      seen.push({
        path: req.url ?? '',
        httpMethod: req.method ?? '',
        authorization: req.headers.authorization,
        headers: req.headers,
        message: msg,
      });
      let result: unknown;
      if (msg.method === 'server/discover') {
        result = {
          supportedVersions: ['2026-07-28'],
          capabilities: { tools: {} },
          serverInfo: { name: 'modern', version: '1.0.0' },
        };
      } else if (msg.method === 'tools/list') {
        result = { tools: MODERN_TOOLS.map((name) => ({ name, inputSchema: { type: 'object' } })) };
      } else if (msg.method === 'tools/call' && msg.params?.name === 'whoami') {
        result = { content: [{ type: 'text', text: `token: ${req.headers.authorization}` }] };
      } else if (msg.method === 'tools/call') {
        const { a = 0, b = 0 } = msg.params?.arguments ?? {};
        result = { content: [{ type: 'text', text: String(a + b) }] };
      }
      const out =
        result === undefined
          ? { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } }
          : { jsonrpc: '2.0', id: msg.id, result };
      res.writeHead(result === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    })().catch(() => res.destroy());
  });
  const url = await listen(http);
  return { url, seen, calls: callsOf(seen), close: closer(http) };
}
