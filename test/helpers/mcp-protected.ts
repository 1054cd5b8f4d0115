/**
 * An OAuth-protected MCP server on loopback (issue 12, MCP 2025-11-25 "Authorization"):
 * the official SDK's `McpServer` on stateless Streamable HTTP at `/mcp`, behind a resource
 * server check written as a real one is: `Authorization: Bearer <JWT access token>`
 * verified against the authorization server's JWKS (`typ: at+jwt`, the issuer, and the
 * audience = this MCP endpoint, the RFC 8707 resource). Without a valid token it answers
 * 401 with `WWW-Authenticate: Bearer resource_metadata="..."` and serves its RFC 9728
 * protected resource metadata at `/.well-known/oauth-protected-resource/mcp`.
 *
 * It records every token presented, and its `whoami` tool reflects the token it got back
 * to the caller, as a careless server might: the proxy must scrub it.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { z } from 'zod';

export interface ProtectedMcpServer {
  /** The MCP endpoint (also the protected resource identifier). */
  readonly url: string;
  readonly metadataUrl: string;
  /** Every `Authorization` header received on the MCP endpoint, in order (absent: ''). */
  readonly authorizations: string[];
  /** Tokens accepted, with their subject. */
  readonly accepted: { token: string; sub: string | undefined }[];
  /** The next `n` tool calls with a valid token are answered 401 anyway (a revoked token). */
  rejectNext(n: number): void;
  close(): Promise<void>;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : (JSON.parse(text) as unknown);
}

function buildServer(sub: string | undefined, token: string): McpServer {
  const server = new McpServer({ name: 'protected-tools', version: '1.0.0' });
  server.registerTool(
    'add',
    { description: 'adds two numbers', inputSchema: { a: z.number(), b: z.number() } },
    ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  server.registerTool('whoami', { description: 'tells who called, and with what' }, () => ({
    content: [{ type: 'text', text: `sub=${String(sub)} token=${token}` }],
  }));
  return server;
}

/** Starts the server; `issuer()` is the authorization server (known once it runs). */
export async function startProtectedMcpServer(issuer: () => string): Promise<ProtectedMcpServer> {
  const authorizations: string[] = [];
  const accepted: { token: string; sub: string | undefined }[] = [];
  let reject = 0;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  let base = '';
  const metadataPath = '/.well-known/oauth-protected-resource/mcp';
  const http = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (path === metadataPath && req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            resource: `${base}/mcp`,
            authorization_servers: [issuer()],
            scopes_supported: ['openid', 'api:read'],
            bearer_methods_supported: ['header'],
          }),
        );
        return;
      }
      if (path !== '/mcp') {
        res.writeHead(404).end();
        return;
      }
      const challenge = (extra = '') =>
        res
          .writeHead(401, {
            'www-authenticate': `Bearer ${extra}resource_metadata="${base}${metadataPath}", scope="api:read"`,
          })
          .end();
      authorizations.push(req.headers.authorization ?? '');
      const m = /^Bearer ([\x21-\x7e]+)$/.exec(req.headers.authorization ?? '');
      if (m === null) return challenge();
      const token = m[1] as string;
      jwks ??= createRemoteJWKSet(new URL(`${issuer()}/jwks`));
      let sub: string | undefined;
      try {
        const { payload } = await jwtVerify(token, jwks, {
          issuer: issuer(),
          audience: `${base}/mcp`,
          typ: 'at+jwt',
        });
        sub = payload.sub;
      } catch {
        return challenge('error="invalid_token", ');
      }
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      if (reject > 0 && (body as { method?: string } | undefined)?.method === 'tools/call') {
        reject--;
        return challenge('error="invalid_token", ');
      }
      accepted.push({ token, sub });
      const server = buildServer(sub, token);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url: `${base}/mcp`,
    metadataUrl: `${base}${metadataPath}`,
    authorizations,
    accepted,
    rejectNext(n) {
      reject = n;
    },
    close: () =>
      new Promise<void>((r) => {
        http.closeAllConnections();
        http.close(() => r());
      }),
  };
}
