/**
 * Issue 5 items 3: `jwt_bearer` (RFC 7523, Google service-account style) and `github_app`
 * end to end through a spawned `nexus up`. A loopback token server verifies the assertion
 * and the app JWT with the public key (jose), the way Google's and GitHub's endpoints do, and
 * issues tokens; a loopback resource server accepts only those tokens and echoes the request.
 * The derived tokens never reach the agent; token requests are counted (cache, single-flight).
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import type { NexusAgent, NexusAgentError } from '@nexus-proxy/sdk';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const EMAIL = 'robot@nexus-test.iam.gserviceaccount.com';
const APP_ID = '123456';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

function rsaKey(): { privatePem: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKey };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** Google-style and GitHub-style token endpoints, verifying with the public key. */
interface TokenServer {
  url: string;
  /** Token requests received, by kind, accepted or not. */
  counts: { google: number; github: number; rejected: number };
  /** Tokens issued and not revoked. */
  valid: Set<string>;
  delayMs: number;
  close(): Promise<void>;
}

async function startTokenServer(publicKey: KeyObject): Promise<TokenServer> {
  const state = {
    counts: { google: 0, github: 0, rejected: 0 },
    valid: new Set<string>(),
    delayMs: 0,
  };
  let base = '';
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      await new Promise((r) => setTimeout(r, state.delayMs));
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      try {
        if (req.method === 'POST' && req.url === '/token') {
          state.counts.google++;
          const form = new URLSearchParams(body);
          if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
            return reply(400, { error: 'unsupported_grant_type' });
          }
          const assertion = form.get('assertion') ?? '';
          const { payload } = await jwtVerify(assertion, publicKey, {
            algorithms: ['RS256'],
            issuer: EMAIL,
            audience: `${base}/token`,
            maxTokenAge: '1h',
          });
          if (payload.scope !== SCOPE || payload.sub !== EMAIL) throw new Error('claims');
          if ((payload.exp ?? 0) - (payload.iat ?? 0) > 3600) throw new Error('too long');
          if (decodeProtectedHeader(assertion).kid !== 'key-1') throw new Error('kid');
          const token = `ya29.${randomBytes(24).toString('base64url')}`;
          state.valid.add(token);
          return reply(200, { access_token: token, expires_in: 3599, token_type: 'Bearer' });
        }
        const m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(req.url ?? '');
        if (req.method === 'POST' && m !== null) {
          state.counts.github++;
          const auth = req.headers.authorization ?? '';
          if (!auth.startsWith('Bearer ')) return reply(401, { message: 'no jwt' });
          const { payload } = await jwtVerify(auth.slice(7), publicKey, {
            algorithms: ['RS256'],
            issuer: APP_ID,
          });
          const now = Math.floor(Date.now() / 1000);
          // GitHub: iat not in the future, exp at most 10 minutes after iat.
          if ((payload.iat ?? 0) > now + 1 || (payload.exp ?? 0) - (payload.iat ?? 0) > 600) {
            throw new Error('times');
          }
          if (m[1] !== '42') return reply(404, { message: 'Not Found' });
          if (!String(req.headers.accept).includes('application/vnd.github')) {
            throw new Error('accept');
          }
          const token = `ghs_${randomBytes(18).toString('hex')}`;
          state.valid.add(token);
          return reply(201, {
            token,
            expires_at: new Date(Date.now() + 3600_000).toISOString(),
            permissions: JSON.parse(body || '{}').permissions ?? { issues: 'read' },
          });
        }
        return reply(404, {});
      } catch {
        state.counts.rejected++;
        return reply(400, { error: 'invalid_grant' });
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    url: base,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as NexusAgentError).code;
  }
}

describe('jwt_bearer and github_app end to end', () => {
  const key = rsaKey();
  const otherKey = rsaKey();
  let tokens: TokenServer;
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;

  beforeAll(async () => {
    tokens = await startTokenServer(key.publicKey);
    upstream = await startUpstream();
    // The resource server accepts only tokens the token server issued (and not revoked).
    upstream.handle((req, res) => {
      const auth = req.headers.authorization ?? '';
      const token = auth.replace(/^(Bearer|token) /, '');
      if (!tokens.valid.has(token)) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-echo-token': token });
      res.end(JSON.stringify({ url: req.url, authorization: auth, token }));
    });
    const jwt = (credential: string) => ({
      upstream: upstream.url,
      auth: {
        type: 'jwt_bearer',
        credential,
        token_url: `${tokens.url}/token`,
        scope: SCOPE,
        lifetime: '30m',
      },
    });
    node = await startNode({
      services: {
        gcp: jwt('gcp-sa'),
        'gcp-burst': jwt('gcp-sa-burst'),
        'gcp-wrong': jwt('gcp-sa-wrong'),
        gh: {
          upstream: upstream.url,
          auth: {
            type: 'github_app',
            credential: 'gh-app',
            installation_id: 42,
            api_base: tokens.url,
          },
        },
        'gh-missing': {
          upstream: upstream.url,
          auth: {
            type: 'github_app',
            credential: 'gh-app',
            installation_id: '7',
            api_base: tokens.url,
          },
        },
      },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], methods: ['GET'] } }],
    });
    const sa = { private_key: key.privatePem, client_email: EMAIL, key_id: 'key-1' };
    await node.setCredential('gcp-sa', sa);
    await node.setCredential('gcp-sa-burst', sa);
    await node.setCredential('gcp-sa-wrong', { ...sa, private_key: otherKey.privatePem });
    await node.setCredential('gh-app', { app_id: APP_ID, private_key: key.privatePem });
    agent = await node.enroll('bot');
  });

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await upstream?.close();
    await tokens?.close();
  });

  it('jwt_bearer: the assertion is exchanged once, the access token is injected and cached, and never reaches the agent', async () => {
    const before = tokens.counts.google;
    for (let i = 0; i < 3; i++) {
      const res = await agent.fetch('gcp', `/v1/projects?i=${i}`, { intent: 'list projects' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-echo-token')).toBe('[REDACTED]');
      const body = (await res.json()) as { authorization: string; token: string };
      expect(body.token).toBe('[REDACTED]');
      expect(body.authorization).toContain('[REDACTED]');
      for (const t of tokens.valid) expect(JSON.stringify(body)).not.toContain(t);
    }
    expect(tokens.counts.google - before).toBe(1);
    const seen = upstream.requests.at(-1)?.headers.authorization ?? '';
    expect(seen).toMatch(/^Bearer ya29\./);
    expect(tokens.valid.has(seen.slice(7))).toBe(true);
    // The agent's own headers never carry the lease or the token upstream.
    expect(upstream.requests.at(-1)?.headers['workload-identity-token']).toBeUndefined();
  });

  it('jwt_bearer: concurrent first requests share one token request (single-flight)', async () => {
    tokens.delayMs = 300;
    try {
      const before = tokens.counts.google;
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          agent.fetch('gcp-burst', `/v1/burst/${i}`, { intent: 'burst' }),
        ),
      );
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
      await Promise.all(results.map((r) => r.body?.cancel()));
      expect(tokens.counts.google - before).toBe(1);
    } finally {
      tokens.delayMs = 0;
    }
  });

  it('jwt_bearer: a 401 from the upstream refreshes the token once and retries', async () => {
    await (await agent.fetch('gcp', '/v1/warm', { intent: 'warm' })).body?.cancel();
    const before = tokens.counts.google;
    const seenBefore = upstream.requests.length;
    tokens.valid.clear(); // the provider revokes every token it issued
    const res = await agent.fetch('gcp', '/v1/after-revoke', { intent: 'after revoke' });
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(tokens.counts.google - before).toBe(1);
    expect(upstream.requests.length - seenBefore).toBe(2); // the 401, then the retry
  });

  it('jwt_bearer: an assertion signed with the wrong key is refused by the token endpoint -> credential_unavailable', async () => {
    const rejected = tokens.counts.rejected;
    expect(await codeOf(agent.fetch('gcp-wrong', '/v1/x', { intent: 'x' }))).toBe(
      'credential_unavailable',
    );
    expect(tokens.counts.rejected - rejected).toBe(1);
    expect(node.output()).not.toContain(otherKey.privatePem.split('\n')[1]);
  });

  it('github_app: app JWT -> installation token, cached, injected as "token", scrubbed', async () => {
    const before = tokens.counts.github;
    for (let i = 0; i < 3; i++) {
      const res = await agent.fetch('gh', '/repos/acme/app/issues', { intent: 'triage' });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain('[REDACTED]');
      expect(text).not.toMatch(/ghs_[0-9a-f]{10}/);
      expect(res.headers.get('x-echo-token')).toBe('[REDACTED]');
    }
    expect(tokens.counts.github - before).toBe(1);
    expect(upstream.requests.at(-1)?.headers.authorization).toMatch(/^token ghs_[0-9a-f]{36}$/);
  });

  it('github_app: an unknown installation -> credential_unavailable, nothing forwarded', async () => {
    const seen = upstream.requests.length;
    expect(await codeOf(agent.fetch('gh-missing', '/repos/acme/app', { intent: 'x' }))).toBe(
      'credential_unavailable',
    );
    expect(upstream.requests.length).toBe(seen);
  });
});
