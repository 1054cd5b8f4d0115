/**
 * Issue 5 (items 1 and 2) end to end: `oauth2_client_credentials` and
 * `oauth2_authorization_code` connections through a spawned `nexus up`, with a real
 * authorization server (`oidc-provider` on loopback) and a resource server that verifies
 * JWT access tokens against the provider's JWKS. Agents use the real SDK; the CLI is the
 * real binary; the login and consent pages are driven by a scripted browser.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent, NexusAgentError } from '@nexus-proxy/sdk';
import { startNode, type TestNode } from './helpers/node.js';
import {
  CC_CLIENT,
  CC_POST_CLIENT,
  startOidc,
  startResourceServer,
  WEB_CLIENT,
  type ResourceServer,
  type TestOidc,
} from './helpers/oidc.js';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as NexusAgentError).code;
  }
}

/** Every encoding of `secret` the scrubber promises to remove. */
function encodings(secret: string): string[] {
  const b = Buffer.from(secret);
  return [
    secret,
    b.toString('base64'),
    b.toString('base64url'),
    encodeURIComponent(secret),
    b.toString('hex'),
  ];
}

function expectNoSecret(text: string, secrets: string[]): void {
  for (const s of secrets) for (const form of encodings(s)) expect(text).not.toContain(form);
}

interface RsBody {
  sub: string;
  client_id?: string;
  data: string;
  echo: string;
  echo_b64: string;
  echo_header: string;
}

/** The problem text Nexus returns for a refused request (read through the SDK error). */
async function fetchProblem(agent: NexusAgent, service: string): Promise<string> {
  try {
    await agent.fetch(service, '/problem');
    return '';
  } catch (e) {
    return JSON.stringify(e) + String((e as Error).message);
  }
}

async function read(res: Response): Promise<{ text: string; body: RsBody; headers: string }> {
  const text = await res.text();
  return {
    text,
    body: JSON.parse(text) as RsBody,
    headers: JSON.stringify([...res.headers]),
  };
}

describe('OAuth2 mechanics end to end (oidc-provider, JWT resource server)', () => {
  let oidc: TestOidc;
  let rs: ResourceServer;
  let node: TestNode;
  const agents: NexusAgent[] = [];
  const enroll = async (name: string, act?: string) => {
    const a = await node.enroll(name, act === undefined ? {} : { act });
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    let issuer = '';
    rs = await startResourceServer(() => issuer);
    oidc = await startOidc(rs.url);
    issuer = oidc.issuer;
    const upstream = rs.url.replace(/\/$/, '');
    const cc = (credential: string, extra: Record<string, unknown> = {}) => ({
      upstream,
      auth: {
        type: 'oauth2_client_credentials',
        credential,
        token_url: oidc.tokenUrl,
        scope: 'api:read',
        resource: rs.url,
        refresh_before: '30s',
        ...extra,
      },
    });
    node = await startNode({
      services: {
        cc: cc('cc-client'),
        'cc-burst': cc('cc-client'),
        'cc-retry': cc('cc-client'),
        'cc-post': cc('cc-post-client', { auth_method: 'client_secret_post' }),
        'cc-bad': cc('cc-bad-client'),
        mail: {
          upstream,
          auth: {
            type: 'oauth2_authorization_code',
            credential: 'web-client',
            authorize_url: oidc.authorizeUrl,
            token_url: oidc.tokenUrl,
            scope: 'openid offline_access api:read',
            resource: rs.url,
            authorize_params: { prompt: 'consent' },
          },
        },
      },
      agents: { bot: { roles: ['reader'] }, helper: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], methods: ['GET'] } }],
    });
    await oidc.setup(`${node.adminUrl}/v1/connections/callback`);
    await node.setCredential('cc-client', CC_CLIENT);
    await node.setCredential('cc-post-client', CC_POST_CLIENT);
    await node.setCredential('cc-bad-client', {
      client_id: CC_CLIENT.client_id,
      client_secret: 'wrong-secret-0123456789',
    });
    await node.setCredential('web-client', WEB_CLIENT);
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) a.close();
    await node?.stop();
    await rs?.close();
    await oidc?.close();
  });

  describe('oauth2_client_credentials', () => {
    it('reaches the resource server with a verified token that never reaches the agent', async () => {
      const agent = await enroll('bot');
      const res = await agent.fetch('cc', '/items', { intent: 'read items' });
      expect(res.status).toBe(200);
      const { text, body, headers } = await read(res);
      expect(body.sub).toBe(CC_CLIENT.client_id);
      expect(body.data).toBe(`data-of-${CC_CLIENT.client_id}`);
      // The resource server echoed the token three ways; the agent sees only [REDACTED].
      expect(body.echo).toContain('[REDACTED]');
      expect(body.echo_b64).toContain('[REDACTED]');
      expect(body.echo_header).toContain('[REDACTED]');
      const token = rs.tokens.at(-1) as string;
      expectNoSecret(text + headers, [token, CC_CLIENT.client_secret]);
      // Cached: a second request uses the same token, no new token request.
      const before = oidc.counts.client_credentials;
      expect((await agent.fetch('cc', '/again')).status).toBe(200);
      expect(rs.tokens.at(-1)).toBe(token);
      expect(oidc.counts.client_credentials).toBe(before);
    });

    it('client_secret_post authenticates the client in the form body', async () => {
      const agent = await enroll('bot');
      const res = await agent.fetch('cc-post', '/items');
      expect(res.status).toBe(200);
      const { body } = await read(res);
      expect(body.sub).toBe(CC_POST_CLIENT.client_id);
    });

    it('concurrent requests cause exactly one token request (single-flight)', async () => {
      const agent = await enroll('bot');
      const before = oidc.counts.client_credentials;
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => agent.fetch('cc-burst', `/burst/${i}`)),
      );
      expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
      await Promise.all(results.map((r) => r.text()));
      expect(oidc.counts.client_credentials - before).toBe(1);
    });

    it('a 401 from the resource server triggers exactly one retry with a fresh token', async () => {
      const agent = await enroll('bot');
      expect((await agent.fetch('cc-retry', '/warm')).status).toBe(200);
      const first = rs.tokens.at(-1);
      const tokensBefore = rs.tokens.length;
      const grantsBefore = oidc.counts.client_credentials;
      rs.rejectNext(1);
      const res = await agent.fetch('cc-retry', '/after-revoke');
      expect(res.status).toBe(200);
      await res.text();
      expect(rs.tokens.length - tokensBefore).toBe(2);
      expect(rs.tokens.at(-2)).toBe(first);
      expect(rs.tokens.at(-1)).not.toBe(first);
      expect(oidc.counts.client_credentials - grantsBefore).toBe(1);

      // Rejected again after the retry: the upstream's 401 is relayed, no third attempt.
      rs.rejectNext(5);
      const n = rs.tokens.length;
      const denied = await agent.fetch('cc-retry', '/still-revoked');
      expect(denied.status).toBe(401);
      const text = await denied.text();
      expect(rs.tokens.length - n).toBe(2);
      expectNoSecret(text, rs.tokens.slice(n));
      rs.rejectNext(0);
    });

    it('a token endpoint failure is credential_unavailable, without the endpoint body', async () => {
      const agent = await enroll('bot');
      const before = oidc.counts.requests;
      expect(await codeOf(agent.fetch('cc-bad', '/x'))).toBe('credential_unavailable');
      expect(oidc.counts.requests - before).toBe(1); // failures are not cached, nor retried
      const problem = await fetchProblem(agent, 'cc-bad');
      expect(problem).not.toMatch(/invalid_client|wrong-secret/);
    });
  });

  describe('oauth2_authorization_code connections', () => {
    let aliceUrl = '';

    it('connects alice (CLI) and bob (admin API) with PKCE and a one-time state', async () => {
      const connect = await node.cli(['connection', 'connect', 'mail', '--principal', 'alice']);
      expect(connect.code).toBe(0);
      aliceUrl = (connect.stdout.split('\n')[0] as string).trim();
      const u = new URL(aliceUrl);
      expect(u.origin + u.pathname).toBe(oidc.authorizeUrl);
      expect(u.searchParams.get('code_challenge_method')).toBe('S256');
      expect(u.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(u.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(u.searchParams.get('redirect_uri')).toBe(`${node.adminUrl}/v1/connections/callback`);

      const done = await oidc.browse(aliceUrl, 'alice');
      expect(done.status).toBe(200);
      expect(done.url.startsWith(`${node.adminUrl}/v1/connections/callback?`)).toBe(true);
      expect(done.body).toContain('Connected');
      expect(oidc.counts.authorization_code).toBe(1);

      // The callback URL (code and state) cannot be used twice.
      const again = await fetch(done.url);
      expect(again.status).toBe(403);
      expect(((await again.json()) as { code: string }).code).toBe('forbidden');

      const bob = await node.admin<{ authorize_url: string; state_expires_at: string }>(
        'POST',
        '/v1/connections/mail',
        { principal: 'bob' },
      );
      expect(bob.status).toBe(201);
      expect(Date.parse(bob.body.state_expires_at)).toBeGreaterThan(Date.now());
      expect((await oidc.browse(bob.body.authorize_url, 'bob')).status).toBe(200);

      const list = await node.cli(['connection', 'list', '--json']);
      expect(list.code).toBe(0);
      const rows = JSON.parse(list.stdout) as { service: string; principal: string }[];
      expect(rows.map((r) => `${r.service}/${r.principal}`).sort()).toEqual([
        'mail/alice',
        'mail/bob',
      ]);
      expect(list.stdout).not.toMatch(/token/i);
      const creds = await node.cli(['credential', 'list', '--json']);
      expect(creds.stdout).not.toContain('alice'); // vault names carry a hash, not the principal
    });

    it('the callback refuses unknown states and requests without one', async () => {
      const unknown = await fetch(
        `${node.adminUrl}/v1/connections/callback?code=x&state=forged-state`,
      );
      expect(unknown.status).toBe(403);
      const none = await fetch(`${node.adminUrl}/v1/connections/callback?code=x`);
      expect(none.status).toBe(403);
      // Every other connection route needs the operator token.
      const anon = await fetch(`${node.adminUrl}/v1/connections`);
      expect(anon.status).toBe(401);
    });

    it("an agent acting for alice gets alice's data and never bob's", async () => {
      const forAlice = await enroll('bot', 'alice');
      const forBob = await enroll('bot', 'bob');
      const a = await read(await forAlice.fetch('mail', '/inbox', { intent: 'read mail' }));
      expect(a.body.sub).toBe('alice');
      expect(a.body.data).toBe('data-of-alice');
      expect(a.body.echo).toContain('[REDACTED]');
      expect(a.body.echo_b64).toContain('[REDACTED]');
      expectNoSecret(a.text + a.headers, [rs.tokens.at(-1) as string, WEB_CLIENT.client_secret]);
      const b = await read(await forBob.fetch('mail', '/inbox'));
      expect(b.body.sub).toBe('bob');
      expect(a.text).not.toContain('data-of-bob');
      // Again, interleaved: each keeps its own account.
      for (let i = 0; i < 3; i++) {
        expect((await read(await forAlice.fetch('mail', `/m/${i}`))).body.sub).toBe('alice');
        expect((await read(await forBob.fetch('mail', `/m/${i}`))).body.sub).toBe('bob');
      }
      // No act: the principal is the agent name, which has no connection.
      const plain = await enroll('helper');
      expect(await codeOf(plain.fetch('mail', '/inbox'))).toBe('connection_expired');
      const carol = await enroll('bot', 'carol');
      expect(await codeOf(carol.fetch('mail', '/inbox'))).toBe('connection_expired');
    });

    it('refreshes with rotation: each new refresh token is stored and works next time', async () => {
      const agent = await enroll('bot', 'alice');
      for (let round = 0; round < 3; round++) {
        const refreshes = oidc.counts.refresh_token;
        const seen = rs.tokens.length;
        rs.rejectNext(1); // the current access token is refused once
        const res = await read(await agent.fetch('mail', `/rotate/${round}`));
        expect(res.body.sub).toBe('alice');
        expect(oidc.counts.refresh_token - refreshes).toBe(1);
        expect(rs.tokens.length - seen).toBe(2);
        expect(rs.tokens.at(-1)).not.toBe(rs.tokens.at(-2));
      }
      // Rotation reuse detection would have revoked the grant had an old one been replayed.
      expect((await read(await agent.fetch('mail', '/after-rotation'))).body.sub).toBe('alice');
    });

    it('an expired access token is refreshed before use', async () => {
      oidc.setAccessTokenTtl(2);
      const agent = await enroll('bot', 'bob');
      rs.rejectNext(1);
      expect((await read(await agent.fetch('mail', '/short'))).body.sub).toBe('bob'); // now a 2 s token
      const refreshes = oidc.counts.refresh_token;
      const seen = rs.tokens.length;
      await new Promise((r) => setTimeout(r, 2500));
      expect((await read(await agent.fetch('mail', '/later'))).body.sub).toBe('bob');
      expect(oidc.counts.refresh_token - refreshes).toBe(1);
      expect(rs.tokens.length - seen).toBe(1); // no 401 round trip: refreshed proactively
      oidc.setAccessTokenTtl(3600);
    });

    it('a revoked refresh token surfaces as connection_expired, never as an upstream 401', async () => {
      const agent = await enroll('bot', 'bob');
      await oidc.revokeAccount('bob');
      rs.rejectNext(1);
      expect(await codeOf(agent.fetch('mail', '/revoked'))).toBe('connection_expired');
      rs.rejectNext(0);
      // Stays expired without hammering the provider; alice is unaffected.
      const calls = oidc.counts.requests;
      expect(await codeOf(agent.fetch('mail', '/revoked-again'))).toBe('connection_expired');
      expect(oidc.counts.requests).toBe(calls);
      const alice = await enroll('bot', 'alice');
      expect((await read(await alice.fetch('mail', '/fine'))).body.sub).toBe('alice');
    });

    it('reconnecting fixes an expired connection; delete removes one', async () => {
      const bob = await node.admin<{ authorize_url: string }>('POST', '/v1/connections/mail', {
        principal: 'bob',
      });
      expect((await oidc.browse(bob.body.authorize_url, 'bob')).status).toBe(200);
      const agent = await enroll('bot', 'bob');
      expect((await read(await agent.fetch('mail', '/back'))).body.sub).toBe('bob');

      const del = await node.cli(['connection', 'delete', 'mail', '--principal', 'alice']);
      expect(del.code).toBe(0);
      const alice = await enroll('bot', 'alice');
      expect(await codeOf(alice.fetch('mail', '/gone'))).toBe('connection_expired');
      const list = await node.cli(['connection', 'list', '--json']);
      expect((JSON.parse(list.stdout) as { principal: string }[]).map((r) => r.principal)).toEqual([
        'bob',
      ]);
      const missing = await node.cli(['connection', 'delete', 'mail', '--principal', 'alice']);
      expect(missing.code).not.toBe(0);
    });
  });
});
