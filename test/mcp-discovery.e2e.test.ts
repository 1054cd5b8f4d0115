/**
 * Issue 12, MCP authorization: `nexus mcp discover` finds how an OAuth-protected MCP
 * server wants tokens: its 401 challenge and protected resource metadata (RFC 9728), then
 * a real authorization server's metadata (`oidc-provider`, RFC 8414 / OIDC discovery), and
 * prints the `oauth2_authorization_code` service entry with the RFC 8707 resource. A server
 * whose metadata names another resource, or an issuer that is not the server's, is refused.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/node.js';
import { startOidc, type TestOidc } from './helpers/oidc.js';

describe('nexus mcp discover (RFC 9728, RFC 8414)', () => {
  let oidc: TestOidc;
  let server: Server;
  let base = '';
  /** What the protected resource metadata says; tests change it. */
  let prm: Record<string, unknown> = {};

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/mcp' && req.method === 'POST') {
        res.writeHead(401, {
          'www-authenticate': `Bearer resource_metadata="${base}/meta/prm.json", scope="tickets"`,
        });
        res.end();
        return;
      }
      if (req.url === '/meta/prm.json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(prm));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    oidc = await startOidc(`${base}/mcp`);
    await oidc.setup('http://127.0.0.1:1/v1/connections/callback');
  });

  afterAll(async () => {
    await oidc?.close();
    server?.closeAllConnections();
    await new Promise<void>((r) => server?.close(() => r()));
  });

  it('prints the service entry from the 401 challenge, the metadata and the authorization server', async () => {
    prm = {
      resource: `${base}/mcp`,
      authorization_servers: [oidc.issuer],
      scopes_supported: ['tickets', 'offline_access'],
    };
    const r = await runCli(['mcp', 'discover', `${base}/mcp`, '--name', 'tickets']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('kind: mcp');
    expect(r.stdout).toContain('type: oauth2_authorization_code');
    expect(r.stdout).toContain(`authorize_url: ${JSON.stringify(oidc.authorizeUrl)}`);
    expect(r.stdout).toContain(`token_url: ${JSON.stringify(oidc.tokenUrl)}`);
    expect(r.stdout).toContain(`resource: ${JSON.stringify(`${base}/mcp`)}`);
    expect(r.stdout).toContain('scope: "tickets offline_access"');
    const json = await runCli(['mcp', 'discover', `${base}/mcp`, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      resource: `${base}/mcp`,
      resourceMetadataUrl: `${base}/meta/prm.json`,
      issuer: oidc.issuer,
    });
  });

  it('refuses metadata for another resource, and an issuer that is not the server found', async () => {
    prm = { resource: 'https://elsewhere.example/mcp', authorization_servers: [oidc.issuer] };
    const other = await runCli(['mcp', 'discover', `${base}/mcp`]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain('upstream_invalid');
    prm = { resource: `${base}/mcp`, authorization_servers: [`${oidc.issuer}/not-it`] };
    const wrongIssuer = await runCli(['mcp', 'discover', `${base}/mcp`]);
    expect(wrongIssuer.code).not.toBe(0);
    expect(wrongIssuer.stdout).toBe('');
  });
});
