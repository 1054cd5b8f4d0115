/**
 * Issue 5 item 4: `token_exchange` (RFC 8693) end to end through a spawned `nexus up`.
 * A loopback security token service authenticates Nexus (client_secret_basic), verifies the
 * subject token (the agent's lease) against the Nexus JWKS at `/.well-known/jwks.json`, and
 * issues a downstream token bound to the agent (or, for a delegation request, to the `act`
 * principal with the agent as actor). A resource server accepts only those tokens. The
 * downstream token never reaches the agent; it is cached per lease.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { NexusAgentError } from '@nexus-proxy/sdk';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

interface Binding {
  sub: string;
  act?: { sub: string };
  aud: string | null;
}

interface Sts {
  url: string;
  count: number;
  rejected: number;
  issued: Map<string, Binding>;
  close(): Promise<void>;
}

async function startSts(proxyUrl: () => string): Promise<Sts> {
  const state = { count: 0, rejected: 0, issued: new Map<string, Binding>() };
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  const verifyLease = async (token: string): Promise<JWTPayload> => {
    jwks ??= createRemoteJWKSet(new URL(`${proxyUrl()}/.well-known/jwks.json`));
    if (decodeProtectedHeader(token).typ !== 'wit+jwt') throw new Error('typ');
    const { payload } = await jwtVerify(token, jwks, {
      issuer: proxyUrl(),
      audience: proxyUrl(),
      algorithms: ['EdDSA', 'ES256'],
    });
    return payload;
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const reply = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        };
        state.count++;
        try {
          const basic = Buffer.from('sts-client:sts-secret').toString('base64');
          if (req.headers.authorization !== `Basic ${basic}`) {
            state.rejected++;
            return reply(401, { error: 'invalid_client' });
          }
          const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
          if (form.get('grant_type') !== GRANT || form.get('subject_token_type') !== JWT_TYPE) {
            throw new Error('grant');
          }
          const subject = await verifyLease(form.get('subject_token') ?? '');
          const act = subject.act as { sub: string } | undefined;
          let binding: Binding = { sub: subject.sub as string, aud: form.get('audience') };
          if (form.has('actor_token')) {
            if (form.get('actor_token_type') !== JWT_TYPE) throw new Error('actor type');
            const actor = await verifyLease(form.get('actor_token') ?? '');
            if (act === undefined) throw new Error('no principal');
            // Delegation: the principal is the subject, the agent acts for it.
            binding = { sub: act.sub, act: { sub: actor.sub as string }, aud: binding.aud };
          } else if (act !== undefined) {
            binding.act = act;
          }
          const token = `dst_${randomBytes(20).toString('base64url')}`;
          state.issued.set(token, binding);
          return reply(200, {
            access_token: token,
            issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
            token_type: 'Bearer',
            expires_in: 600,
          });
        } catch {
          state.rejected++;
          return reply(400, { error: 'invalid_request' });
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
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

describe('token_exchange end to end', () => {
  let sts: Sts;
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    sts = await startSts(() => node.proxyUrl);
    upstream = await startUpstream();
    upstream.handle((req, res) => {
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      const binding = sts.issued.get(token);
      if (binding === undefined) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_token"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ binding, token }));
    });
    const exchange = (credential: string, extra: object = {}) => ({
      upstream: upstream.url,
      auth: {
        type: 'token_exchange',
        token_url: `${sts.url}/token`,
        credential,
        audience: 'https://orders.example',
        ...extra,
      },
    });
    node = await startNode({
      services: {
        orders: exchange('sts-client'),
        'orders-delegated': exchange('sts-client', { actor: true }),
        'orders-badclient': exchange('sts-wrong'),
      },
      agents: { bot: { roles: ['orders'] }, helper: { roles: ['orders'] } },
      policies: [{ id: 'orders', allow: { roles: ['orders'], methods: ['GET'] } }],
    });
    await node.setCredential('sts-client', {
      client_id: 'sts-client',
      client_secret: 'sts-secret',
    });
    await node.setCredential('sts-wrong', {
      client_id: 'sts-client',
      client_secret: 'not-the-secret',
    });
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
    await sts?.close();
  });

  it('exchanges the verified lease for a token bound to the agent, cached per lease, never shown', async () => {
    const agent = await node.enroll('bot');
    try {
      const before = sts.count;
      for (let i = 0; i < 3; i++) {
        const res = await agent.fetch('orders', `/orders?page=${i}`, { intent: 'list orders' });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { binding: Binding; token: string };
        expect(body.binding).toEqual({
          sub: 'nexus://nexus.local/agent/bot',
          aud: 'https://orders.example',
        });
        expect(body.token).toBe('[REDACTED]');
      }
      expect(sts.count - before).toBe(1);
      expect(upstream.requests.at(-1)?.headers.authorization).toMatch(/^Bearer dst_/);
    } finally {
      agent.close();
    }
  });

  it('another lease (another agent) gets its own downstream token', async () => {
    const a = await node.enroll('helper');
    try {
      const before = sts.count;
      const res = await a.fetch('orders', '/orders', { intent: 'x' });
      const body = (await res.json()) as { binding: Binding };
      expect(body.binding.sub).toBe('nexus://nexus.local/agent/helper');
      expect(sts.count - before).toBe(1);
    } finally {
      a.close();
    }
  });

  it('the lease `act` reaches the STS; with actor: true it is a delegation to the principal', async () => {
    const agent = await node.enroll('bot', { act: 'user:alice' });
    try {
      const plain = await agent.fetch('orders', '/orders', { intent: 'for alice' });
      expect(((await plain.json()) as { binding: Binding }).binding).toEqual({
        sub: 'nexus://nexus.local/agent/bot',
        act: { sub: 'user:alice' },
        aud: 'https://orders.example',
      });
      const delegated = await agent.fetch('orders-delegated', '/orders', { intent: 'for alice' });
      expect(((await delegated.json()) as { binding: Binding }).binding).toEqual({
        sub: 'user:alice',
        act: { sub: 'nexus://nexus.local/agent/bot' },
        aud: 'https://orders.example',
      });
    } finally {
      agent.close();
    }
  });

  it('the STS refusing Nexus as a client -> credential_unavailable, nothing forwarded', async () => {
    const agent = await node.enroll('bot');
    try {
      const seen = upstream.requests.length;
      const rejected = sts.rejected;
      expect(await codeOf(agent.fetch('orders-badclient', '/orders', { intent: 'x' }))).toBe(
        'credential_unavailable',
      );
      expect(sts.rejected - rejected).toBe(1);
      expect(upstream.requests.length).toBe(seen);
      expect(node.output()).not.toContain('not-the-secret');
    } finally {
      agent.close();
    }
  });
});
