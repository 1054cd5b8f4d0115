/**
 * Issue 12, upstream auth per the MCP authorization spec (2025-11-25 "Authorization"), end
 * to end on loopback: an OAuth-protected MCP server (the official SDK's server behind a
 * JWT resource-server check with the RFC 8707 audience), `oidc-provider` as its
 * authorization server (dynamic client registration, client ID metadata documents,
 * resource indicators), a spawned `nexus up` and the real CLI.
 *
 * The operator: `nexus mcp discover --write` (RFC 9728 + RFC 8414) writes the service,
 * `nexus reload`, `nexus mcp connect` registers Nexus as a client (DCR, or CIMD behind an
 * HTTPS front) and prints the authorize link, driven here by a scripted browser. Then an
 * unmodified MCP client (the SDK's Client over StreamableHTTPClientTransport, signed by
 * `mcpFetch`) lists and calls tools through the proxy with the principal's token
 * injected; the agent never sees it, and its own Authorization header never reaches the
 * server.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { generateAgentKey, signRequest } from '@nexus-proxy/protocol';
import { mcpFetch, type NexusAgent } from '@nexus-proxy/sdk';
import { startProtectedMcpServer, type ProtectedMcpServer } from './helpers/mcp-protected.js';
import { runCli, startNode, type TestNode } from './helpers/node.js';
import { CC_CLIENT, startOidc, type TestOidc } from './helpers/oidc.js';
import { makeTestPki, type TestPki } from './helpers/tls.js';

const OTHER_RESOURCE = 'http://127.0.0.1:9/other-api';
const AGENT_OWN_TOKEN = 'agent-own-bearer-token-0123456789abcdef';

const policies = [
  // Speaking MCP to every kind: mcp service, and the two tools.
  { id: 'support-speaks-mcp', allow: { roles: ['support'] } },
  { id: 'support-tools', allow: { roles: ['support'], mcp: { tools: ['add', 'whoami'] } } },
];

/** The Authorization headers the SDK client handed to the Nexus signer (mcpFetch). */
const sentAuthorizations: string[] = [];

/** An SDK client through the proxy; the agent also sends a bearer token of its own. */
async function connectClient(node: TestNode, agent: NexusAgent, service: string) {
  const client = new Client({ name: 'oauth-e2e', version: '1.0.0' });
  const signed = mcpFetch(agent, service);
  const transport = new StreamableHTTPClientTransport(new URL(`${node.proxyUrl}/${service}/`), {
    fetch: (input, init) => {
      sentAuthorizations.push(new Headers(init?.headers).get('authorization') ?? '');
      return signed(input, init);
    },
    requestInit: { headers: { authorization: `Bearer ${AGENT_OWN_TOKEN}` } },
  });
  await client.connect(transport);
  return client;
}

const textOf = (r: unknown): string =>
  ((r as { content: { text: string }[] }).content[0] as { text: string }).text;

/** POSTs an MCP ping straight to the server with `token` (no Nexus in between). */
async function direct(url: string, token: string): Promise<number> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: {},
        clientInfo: { name: 'direct', version: '1' },
      },
    }),
  });
  await res.arrayBuffer();
  return res.status;
}

describe('MCP upstream OAuth: discover, dynamic client registration, connect, call', () => {
  let mcp: ProtectedMcpServer;
  let oidc: TestOidc;
  let node: TestNode;
  const agents: NexusAgent[] = [];
  const clients: Client[] = [];
  let clientId = '';

  beforeAll(async () => {
    mcp = await startProtectedMcpServer(() => oidc.issuer);
    oidc = await startOidc(mcp.url, { registration: true, otherResources: [OTHER_RESOURCE] });
    // Two services a registration must refuse: one sends principals to another server
    // than the one the MCP server names, one would ask for tokens without its resource.
    const svc = (auth: Record<string, unknown>) => ({
      kind: 'mcp',
      upstream: mcp.url,
      auth: {
        type: 'oauth2_authorization_code',
        authorize_url: `${oidc.issuer}/auth`,
        token_url: `${oidc.issuer}/token`,
        resource: mcp.url,
        ...auth,
      },
    });
    node = await startNode({
      agents: { bot: { roles: ['support'] } },
      policies,
      services: {
        'elsewhere-as': svc({
          credential: 'elsewhere-client',
          authorize_url: 'http://127.0.0.1:9/auth',
        }),
        'no-resource': svc({ credential: 'no-resource-client', resource: undefined }),
      },
    });
    await oidc.setup(`${node.adminUrl}/v1/connections/callback`);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const a of agents) a.close();
    await node?.stop();
    await oidc?.close();
    await mcp?.close();
  });

  it('discover --write adds the service (RFC 9728 + RFC 8414); reload applies it', async () => {
    const w = await runCli([
      'mcp',
      'discover',
      mcp.url,
      '--name',
      'tickets',
      '--write',
      node.configPath,
    ]);
    expect(w.stderr).toBe('');
    expect(w.code).toBe(0);
    // Written once: an existing service is never replaced.
    const again = await runCli([
      'mcp',
      'discover',
      mcp.url,
      '--name',
      'tickets',
      '--write',
      node.configPath,
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('conflict');
    const reload = await node.cli(['reload']);
    expect(reload.code).toBe(0);
    const svc = await node.admin<{ services: { name: string; kind: string; auth_type: string }[] }>(
      'GET',
      '/v1/services',
    );
    expect(svc.body.services.find((s) => s.name === 'tickets')).toMatchObject({
      kind: 'mcp',
      auth_type: 'oauth2_authorization_code',
    });
    // No https callback here: no client ID metadata document is served.
    expect((await fetch(`${node.adminUrl}/v1/mcp/clients/tickets`)).status).toBe(404);
  });

  it('connect registers Nexus (RFC 7591) and authorizes alice with PKCE and the RFC 8707 resource', async () => {
    const r = await node.cli(['mcp', 'connect', 'tickets', '--principal', 'alice', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      authorize_url: string;
      registration: { method: string; client_id: string; credential: string } | null;
    };
    expect(out.registration?.method).toBe('dcr');
    expect(out.registration?.credential).toBe('tickets-oauth-client');
    expect(r.stdout).not.toContain('"client_secret"'); // a field name only in the vault
    clientId = out.registration?.client_id as string;
    const u = new URL(out.authorize_url);
    expect(u.searchParams.get('client_id')).toBe(clientId);
    expect(u.searchParams.getAll('resource')).toEqual([mcp.url]);
    expect(u.searchParams.get('code_challenge_method')).toBe('S256');

    const done = await oidc.browse(out.authorize_url, 'alice');
    expect(done.status).toBe(200);
    expect(done.body).toContain('Connected');
    // The resource arrived at the authorization server, on both requests.
    const seen = oidc.resources.filter((s) => s.clientId === clientId);
    expect(seen.map((s) => [s.endpoint, s.grantType, s.resource])).toEqual([
      ['authorization', undefined, mcp.url],
      ['token', 'authorization_code', mcp.url],
    ]);
    // The registration is in the vault (its secret with it), never shown.
    const creds = await node.cli(['credential', 'list', '--json']);
    const row = (JSON.parse(creds.stdout) as { name: string; fields: string[] }[]).find(
      (c) => c.name === 'tickets-oauth-client',
    );
    expect(row).toBeDefined();
    expect(creds.stdout).toContain('client_secret'); // the field name, not its value
    // Registering again needs --replace; connecting bob reuses the registration.
    const twice = await node.cli(['mcp', 'register', 'tickets']);
    expect(twice.code).not.toBe(0);
    expect(twice.stderr).toContain('conflict');
    const bob = await node.cli(['mcp', 'connect', 'tickets', '--principal', 'bob', '--json']);
    const bobOut = JSON.parse(bob.stdout) as { authorize_url: string; registration: unknown };
    expect(bobOut.registration).toBeNull();
    expect(new URL(bobOut.authorize_url).searchParams.get('client_id')).toBe(clientId);
    expect((await oidc.browse(bobOut.authorize_url, 'bob')).status).toBe(200);
  });

  it("an unmodified MCP client calls tools with the principal's token; the agent never sees it", async () => {
    const alice = await node.enroll('bot', { act: 'alice' });
    agents.push(alice);
    const client = await connectClient(node, alice, 'tickets');
    clients.push(client);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(['add', 'whoami']);
    const sum = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
    expect(textOf(sum)).toBe('42');
    const who = textOf(await client.callTool({ name: 'whoami', arguments: {} }));
    expect(who).toContain('sub=alice');
    const token = mcp.accepted.at(-1)?.token as string;
    expect(token).toMatch(/^ey/);
    expect(who).not.toContain(token);
    expect(who).toContain('[REDACTED]');
    // The client sent its own bearer token with every request; every request the server
    // got carried Nexus's token for alice instead.
    expect(sentAuthorizations.length).toBeGreaterThan(3);
    expect(sentAuthorizations.every((a) => a === `Bearer ${AGENT_OWN_TOKEN}`)).toBe(true);
    expect(mcp.authorizations.length).toBeGreaterThan(3);
    for (const a of mcp.authorizations) expect(a).not.toContain(AGENT_OWN_TOKEN);
    expect(mcp.accepted.slice(-3).every((t) => t.sub === 'alice')).toBe(true);

    // bob's agent reaches bob's account, and only bob's.
    const bob = await node.enroll('bot', { act: 'bob' });
    agents.push(bob);
    const bobClient = await connectClient(node, bob, 'tickets');
    clients.push(bobClient);
    expect(textOf(await bobClient.callTool({ name: 'whoami', arguments: {} }))).toContain(
      'sub=bob',
    );
    expect(mcp.accepted.at(-1)?.sub).toBe('bob');

    // carol never connected: refused by Nexus, nothing reaches the server.
    const carol = await node.enroll('bot', { act: 'carol' });
    agents.push(carol);
    const before = mcp.authorizations.length;
    await expect(connectClient(node, carol, 'tickets')).rejects.toThrow();
    expect(mcp.authorizations.length).toBe(before);
  });

  it("a signed request carrying the agent's own Authorization gets it replaced, not passed", async () => {
    const { privateKey, publicJwk } = await generateAgentKey('ed25519');
    const lease = await fetch(`${node.proxyUrl}/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        enrollment_token: await node.enrollmentToken('bot', { act: 'alice' }),
        jwk: publicJwk,
      }),
    }).then(async (r) => ((await r.json()) as { lease: string }).lease);
    const url = `${node.proxyUrl}/tickets/`;
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'whoami', arguments: {} },
    });
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25',
      authorization: `Bearer ${AGENT_OWN_TOKEN}`,
    };
    const added = await signRequest({
      method: 'POST',
      url,
      headers,
      body: new TextEncoder().encode(body),
      lease,
      key: privateKey,
      intent: 'who am i',
    });
    const seen = mcp.authorizations.length;
    const res = await fetch(url, { method: 'POST', headers: { ...headers, ...added }, body });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain('sub=alice');
    expect(text).not.toContain(AGENT_OWN_TOKEN);
    const got = mcp.authorizations.slice(seen);
    expect(got).toHaveLength(1);
    expect(got[0]).toBe(`Bearer ${mcp.accepted.at(-1)?.token as string}`);
    expect(mcp.accepted.at(-1)?.sub).toBe('alice');
  });

  it('the server refuses a token for another resource, and takes the one Nexus got', async () => {
    const res = await fetch(oidc.tokenUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CC_CLIENT.client_id}:${CC_CLIENT.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        scope: 'api:read',
        resource: OTHER_RESOURCE,
      }).toString(),
    });
    expect(res.status).toBe(200);
    const other = ((await res.json()) as { access_token: string }).access_token;
    expect(await direct(mcp.url, other)).toBe(401);
    expect(await direct(mcp.url, mcp.accepted.at(-1)?.token as string)).toBe(200);
  });

  it('a refused token is refreshed (refresh_token grant with the resource) and the call goes through', async () => {
    const alice = await node.enroll('bot', { act: 'alice' });
    agents.push(alice);
    const client = await connectClient(node, alice, 'tickets');
    clients.push(client);
    const refreshes = oidc.counts.refresh_token;
    const old = mcp.accepted.at(-1)?.token;
    mcp.rejectNext(1);
    expect(textOf(await client.callTool({ name: 'add', arguments: { a: 1, b: 1 } }))).toBe('2');
    expect(oidc.counts.refresh_token - refreshes).toBe(1);
    expect(mcp.accepted.at(-1)?.token).not.toBe(old);
    expect(oidc.resources.at(-1)).toMatchObject({
      endpoint: 'token',
      grantType: 'refresh_token',
      clientId,
      resource: mcp.url,
    });
  });

  it('registration refuses a service sending principals elsewhere, or without its resource', async () => {
    for (const name of ['elsewhere-as', 'no-resource']) {
      const r = await node.admin<{ code: string }>('POST', `/v1/mcp/${name}/registration`, {});
      expect(r.status).toBe(502);
      expect(r.body.code).toBe('upstream_invalid');
    }
    const creds = await node.cli(['credential', 'list', '--json']);
    expect(creds.stdout).not.toContain('elsewhere-client');
    expect(creds.stdout).not.toContain('no-resource-client');
  });

  it('registration and its routes need the operator token, and a kind: mcp OAuth service', async () => {
    const anon = await fetch(`${node.adminUrl}/v1/mcp/tickets/registration`, { method: 'POST' });
    expect(anon.status).toBe(401);
    const none = await node.admin<{ code: string }>('POST', '/v1/mcp/nope/registration', {});
    expect(none.status).toBe(404);
    const bad = await node.admin<{ code: string }>('POST', '/v1/mcp/tickets/registration', {
      method: 'magic',
    });
    expect(bad.status).toBe(400);
  });
});

/** An HTTPS front for the admin listener, as an operator puts Nexus behind TLS. */
async function startHttpsFront(
  pki: TestPki,
  target: () => string,
): Promise<{ url: string; server: HttpsServer }> {
  const server = createHttpsServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
    const t = new URL(target());
    const up = httpRequest(
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('MCP upstream OAuth: client ID metadata document', () => {
  let pki: TestPki;
  let front: { url: string; server: HttpsServer };
  let mcp: ProtectedMcpServer;
  let oidc: TestOidc;
  let node: TestNode;
  let trusting: Agent;
  const fetched: string[] = [];
  const agents: NexusAgent[] = [];

  beforeAll(async () => {
    pki = makeTestPki();
    trusting = new Agent({ connect: { ca: pki.ca.cert } });
    // The provider's fetch of client ID metadata documents (and the scripted browser)
    // trusts the test CA; oidc-provider's own fetch also refuses loopback addresses.
    const trustingFetch = ((url: string | URL, init?: RequestInit) => {
      fetched.push(String(url));
      return fetch(url, { ...init, dispatcher: trusting } as unknown as RequestInit);
    }) as typeof fetch;
    front = await startHttpsFront(pki, () => node.adminUrl);
    mcp = await startProtectedMcpServer(() => oidc.issuer);
    oidc = await startOidc(mcp.url, {
      clientIdMetadataDocuments: true,
      fetch: trustingFetch,
      browserFetch: ((url: string | URL, init?: RequestInit) =>
        fetch(url, { ...init, dispatcher: trusting } as unknown as RequestInit)) as typeof fetch,
    });
    node = await startNode({
      agents: { bot: { roles: ['support'] } },
      policies,
      services: {
        tickets: {
          kind: 'mcp',
          upstream: mcp.url,
          auth: {
            type: 'oauth2_authorization_code',
            credential: 'tickets-oauth-client',
            authorize_url: `${oidc.issuer}/auth`,
            token_url: `${oidc.issuer}/token`,
            resource: mcp.url,
            scope: 'openid api:read',
            redirect_uri: `${front.url}/v1/connections/callback`,
          },
        },
      },
    });
    await oidc.setup(`${front.url}/v1/connections/callback`);
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) a.close();
    await node?.stop();
    await oidc?.close();
    await mcp?.close();
    front?.server.closeAllConnections();
    await new Promise<void>((r) => (front ? front.server.close(() => r()) : r()));
    await trusting?.close();
  });

  it('discovery reports that the server accepts client ID metadata documents', async () => {
    const d = await runCli(['mcp', 'discover', mcp.url, '--json']);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ clientIdMetadataDocuments: true });
  });

  it('serves the document: its client_id is its own https URL, a public client, no secret', async () => {
    const url = `${front.url}/v1/mcp/clients/tickets`;
    const res = await fetch(url, { dispatcher: trusting } as unknown as RequestInit);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    expect(doc).toEqual({
      client_id: url,
      client_name: 'Nexus',
      redirect_uris: [`${front.url}/v1/connections/callback`],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    });
    expect((await fetch(`${node.adminUrl}/v1/mcp/clients/other`)).status).toBe(404);
  });

  it('connect uses the document as client_id; the server fetches it; calls carry the token', async () => {
    const r = await node.cli(['mcp', 'connect', 'tickets', '--principal', 'carol', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      authorize_url: string;
      registration: { method: string; client_id: string };
    };
    const clientId = `${front.url}/v1/mcp/clients/tickets`;
    expect(out.registration).toMatchObject({ method: 'cimd', client_id: clientId });
    expect(new URL(out.authorize_url).searchParams.get('client_id')).toBe(clientId);
    const done = await oidc.browse(out.authorize_url, 'carol');
    expect(done.body).toContain('Connected');
    expect(fetched).toContain(clientId);
    expect(oidc.resources.filter((s) => s.clientId === clientId).map((s) => s.resource)).toEqual([
      mcp.url,
      mcp.url,
    ]);
    // The stored client credential has no secret: a public client with PKCE.
    const creds = await node.cli(['credential', 'list', '--json']);
    const row = (JSON.parse(creds.stdout) as { name: string }[]).find(
      (c) => c.name === 'tickets-oauth-client',
    );
    expect(JSON.stringify(row)).not.toContain('client_secret');

    const carol = await node.enroll('bot', { act: 'carol' });
    agents.push(carol);
    const client = await connectClient(node, carol, 'tickets');
    const who = textOf(await client.callTool({ name: 'whoami', arguments: {} }));
    expect(who).toContain('sub=carol');
    expect(who).toContain('[REDACTED]');
    // The public client refreshes too (client_id in the form, no secret), with the resource.
    const refreshes = oidc.counts.refresh_token;
    mcp.rejectNext(1);
    expect(textOf(await client.callTool({ name: 'add', arguments: { a: 3, b: 4 } }))).toBe('7');
    await client.close();
    expect(oidc.counts.refresh_token - refreshes).toBe(1);
    expect(oidc.resources.at(-1)).toMatchObject({
      endpoint: 'token',
      grantType: 'refresh_token',
      clientId,
      resource: mcp.url,
    });
    for (const a of mcp.authorizations) expect(a).not.toContain(AGENT_OWN_TOKEN);
  });
});
