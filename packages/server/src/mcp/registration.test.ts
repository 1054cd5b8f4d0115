/**
 * Client registration for upstream MCP servers (mcp/registration.ts) against a real
 * loopback registration endpoint that answers what a test sets: the choice of method, and
 * the answers Nexus refuses (a changed redirect URI, a missing secret, an unknown auth
 * method, a refusal), none of whose content reaches the error.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import type { McpAuthDiscovery } from './discovery.js';
import { clientMetadataDocument, clientMetadataUrl, registerMcpClient } from './registration.js';

describe('MCP client registration', () => {
  let server: Server;
  let base = '';
  let answer: { status: number; body: unknown } = { status: 201, body: {} };
  const received: unknown[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const discovery = (extra: Partial<McpAuthDiscovery> = {}): McpAuthDiscovery => ({
    resource: 'https://mcp.example/mcp',
    resourceMetadataUrl: 'https://mcp.example/.well-known/oauth-protected-resource/mcp',
    issuer: base,
    authorizationEndpoint: `${base}/auth`,
    tokenEndpoint: `${base}/token`,
    registrationEndpoint: `${base}/reg`,
    clientIdMetadataDocuments: false,
    ...extra,
  });
  const httpsCallback = 'https://nexus.example/admin/v1/connections/callback';
  const loopCallback = 'http://127.0.0.1:7071/v1/connections/callback';

  it('the metadata document URL sits next to an https callback, else there is none', () => {
    expect(clientMetadataUrl('tickets', httpsCallback)).toBe(
      'https://nexus.example/admin/v1/mcp/clients/tickets',
    );
    expect(clientMetadataUrl('tickets', loopCallback)).toBeUndefined();
    expect(clientMetadataUrl('tickets', 'https://nexus.example/elsewhere')).toBeUndefined();
    expect(clientMetadataUrl('tickets', `${httpsCallback}?x=1`)).toBeUndefined();
    expect(clientMetadataUrl('tickets', undefined)).toBeUndefined();
    const doc = clientMetadataDocument('https://n.example/v1/mcp/clients/t', httpsCallback);
    expect(doc.token_endpoint_auth_method).toBe('none');
    expect(JSON.stringify(doc)).not.toContain('secret');
  });

  it('prefers a client ID metadata document, posting nothing', async () => {
    const n = received.length;
    const r = await registerMcpClient({
      service: 'tickets',
      discovery: discovery({ clientIdMetadataDocuments: true }),
      redirectUri: httpsCallback,
    });
    expect(r).toEqual({
      method: 'cimd',
      clientId: 'https://nexus.example/admin/v1/mcp/clients/tickets',
      tokenEndpointAuthMethod: 'none',
    });
    expect(received.length).toBe(n);
  });

  it('falls back to dynamic registration, asking for the callback and a confidential client', async () => {
    answer = {
      status: 201,
      body: {
        client_id: 'c-1',
        client_secret: 's-1',
        redirect_uris: [loopCallback],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    };
    const r = await registerMcpClient({
      service: 'tickets',
      discovery: discovery({ clientIdMetadataDocuments: true }), // no https callback: no CIMD
      redirectUri: loopCallback,
    });
    expect(r).toEqual({
      method: 'dcr',
      clientId: 'c-1',
      clientSecret: 's-1',
      tokenEndpointAuthMethod: 'client_secret_basic',
    });
    expect(received.at(-1)).toMatchObject({
      application_type: 'web',
      redirect_uris: [loopCallback],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
    });
  });

  it('refuses answers it cannot use, without repeating them', async () => {
    const bad: { status: number; body: unknown }[] = [
      { status: 400, body: { error: 'invalid_redirect_uri', error_description: 'leak-me' } },
      {
        status: 201,
        body: { client_id: 'c', client_secret: 's', redirect_uris: ['https://evil.example/cb'] },
      },
      { status: 201, body: { client_id: 'c', token_endpoint_auth_method: 'client_secret_basic' } },
      {
        status: 201,
        body: { client_id: 'c', client_secret: 's', token_endpoint_auth_method: 'tls_client_auth' },
      },
      { status: 201, body: { client_secret: 'leak-me' } },
      { status: 201, body: ['leak-me'] },
    ];
    for (const b of bad) {
      answer = b;
      const err = await registerMcpClient({
        service: 'tickets',
        discovery: discovery(),
        redirectUri: loopCallback,
      }).catch((e: unknown) => e);
      expect(isNexusError(err) && err.code).toBe('upstream_invalid');
      expect(JSON.stringify(err) + String(err)).not.toContain('leak-me');
    }
  });

  it('without a registration endpoint or CIMD, asks for pre-registered credentials', async () => {
    const err = await registerMcpClient({
      service: 'tickets',
      discovery: discovery({ registrationEndpoint: undefined }),
      redirectUri: loopCallback,
    }).catch((e: unknown) => e);
    expect(isNexusError(err) && err.code).toBe('upstream_invalid');
    const cimd = await registerMcpClient({
      service: 'tickets',
      discovery: discovery(),
      redirectUri: loopCallback,
      prefer: 'cimd',
    }).catch((e: unknown) => e);
    expect(isNexusError(cimd) && cimd.code).toBe('upstream_invalid');
    // A registration endpoint that is neither https nor loopback is never called.
    const n = received.length;
    const remote = await registerMcpClient({
      service: 'tickets',
      discovery: discovery({ registrationEndpoint: 'http://registrar.example/reg' }),
      redirectUri: loopCallback,
    }).catch((e: unknown) => e);
    expect(isNexusError(remote) && remote.code).toBe('upstream_invalid');
    expect(received.length).toBe(n);
  });
});
