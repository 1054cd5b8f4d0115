// oauth2_authorization_code over an in-memory vault and a loopback token endpoint: PKCE and
// one-time expiring state, per-principal isolation, refresh with rotation, single-flight
// refresh, and connection_expired for every "connect again" failure.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import type { MechanicVault, ResolvedCredential } from './mechanic.js';
import {
  connectionCredentialName,
  oauth2AuthorizationCodeMechanic as def,
  sha256Hex,
  type ConnectionMechanic,
} from './oauth2-authorization-code.js';
import { fakeContext, outbound } from './test/fake-context.js';

let server: Server;
let tokenUrl = '';
const forms: URLSearchParams[] = [];
/** Valid refresh tokens; a rotated or revoked one is removed. */
const refreshTokens = new Set<string>();
let n = 0;
let delayMs = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        forms.push(form);
        await new Promise((r) => setTimeout(r, delayMs));
        res.setHeader('content-type', 'application/json');
        const issue = () => {
          const rt = `rt-${++n}`;
          refreshTokens.add(rt);
          res.end(
            JSON.stringify({
              access_token: `at-${n}-${form.get('code') ?? 'refresh'}`,
              token_type: 'Bearer',
              expires_in: 3600,
              refresh_token: rt,
            }),
          );
        };
        if (form.get('grant_type') === 'authorization_code') {
          const ok =
            form.get('code')?.startsWith('code-') === true &&
            (form.get('code_verifier') ?? '').length >= 43;
          if (!ok) {
            res.statusCode = 400;
            res.end('{"error":"invalid_grant"}');
            return;
          }
          issue();
          return;
        }
        const rt = form.get('refresh_token') ?? '';
        if (!refreshTokens.delete(rt)) {
          res.statusCode = 400;
          res.end('{"error":"invalid_grant"}');
          return;
        }
        issue(); // rotation: the old refresh token is gone
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  tokenUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(() => {
  forms.length = 0;
  delayMs = 0;
});

function memoryVault(): MechanicVault & { data: Map<string, ResolvedCredential> } {
  const data = new Map<string, ResolvedCredential>();
  data.set('web', {
    name: 'web',
    version: 1,
    fields: { client_id: 'web', client_secret: 'web-secret' },
  });
  return {
    data,
    async resolve(name) {
      const c = data.get(name);
      if (c === undefined) throw new Error('not set');
      return c;
    },
    async set(name, fields) {
      const version = (data.get(name)?.version ?? 0) + 1;
      data.set(name, { name, version, fields: { ...fields } });
      return { name, version };
    },
    async delete(name) {
      data.delete(name);
    },
    async describe(name) {
      const c = data.get(name);
      return c === undefined ? undefined : { name, version: c.version };
    },
    async list() {
      return [...data.values()].map((c) => ({ name: c.name, version: c.version, createdAt: 0 }));
    },
  };
}

function make(vault: MechanicVault, clock: () => number = Date.now): ConnectionMechanic {
  return def.create(
    'mail',
    def.optionsSchema.parse({
      credential: 'web',
      authorize_url: 'https://as.example/authorize',
      token_url: tokenUrl,
      scope: 'openid offline_access',
    }),
    { clock, vault, adminUrl: () => 'http://127.0.0.1:7071' },
  ) as ConnectionMechanic;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

/** Connects `principal` as the provider would: the code comes back with the state. */
async function connect(m: ConnectionMechanic, principal: string): Promise<void> {
  const { authorizeUrl } = await m.connections.start(principal);
  const state = new URL(authorizeUrl).searchParams.get('state') as string;
  await m.connections.complete(sha256Hex(state), { code: `code-${principal}` });
}

const client: ResolvedCredential = {
  name: 'web',
  version: 1,
  fields: { client_id: 'web', client_secret: 'web-secret' },
};

describe('oauth2_authorization_code', () => {
  it('authorize links carry PKCE S256, a fresh state and the admin callback', async () => {
    const m = make(memoryVault());
    const { authorizeUrl } = await m.connections.start('alice');
    const u = new URL(authorizeUrl);
    expect(u.origin + u.pathname).toBe('https://as.example/authorize');
    expect(u.searchParams.get('response_type')).toBe('code');
    expect(u.searchParams.get('client_id')).toBe('web');
    expect(u.searchParams.get('redirect_uri')).toBe(
      'http://127.0.0.1:7071/v1/connections/callback',
    );
    expect(u.searchParams.get('code_challenge_method')).toBe('S256');
    const state = u.searchParams.get('state') as string;
    expect(await m.connections.owns(sha256Hex(state))).toBe(true);
    expect(await m.connections.owns(state)).toBe(false); // only the hash is kept

    await m.connections.complete(sha256Hex(state), { code: 'code-alice' });
    const exchange = forms.at(-1) as URLSearchParams;
    const challenge = createHash('sha256')
      .update(exchange.get('code_verifier') as string)
      .digest('base64url');
    expect(challenge).toBe(u.searchParams.get('code_challenge'));
    expect(exchange.get('redirect_uri')).toBe(u.searchParams.get('redirect_uri'));
    // One time.
    expect(await codeOf(m.connections.complete(sha256Hex(state), { code: 'code-alice' }))).toBe(
      'forbidden',
    );
  });

  it('state expires; a provider error consumes it', async () => {
    let now = 1_000_000;
    const m = make(memoryVault(), () => now);
    const a = new URL((await m.connections.start('alice')).authorizeUrl).searchParams.get('state');
    now += 11 * 60_000;
    expect(
      await codeOf(m.connections.complete(sha256Hex(a as string), { code: 'code-alice' })),
    ).toBe('forbidden');
    const b = new URL((await m.connections.start('alice')).authorizeUrl).searchParams.get('state');
    expect(
      await codeOf(m.connections.complete(sha256Hex(b as string), { error: 'access_denied' })),
    ).toBe('forbidden');
    expect(await m.connections.owns(sha256Hex(b as string))).toBe(false);
  });

  it("uses the act principal's connection, else the agent's; never another's", async () => {
    const vault = memoryVault();
    const m = make(vault);
    await connect(m, 'alice');
    await connect(m, 'bob');
    const as = async (act: string | undefined, agent = 'bot') => {
      const req = outbound('GET', 'https://api.example/x');
      await m.apply(req, fakeContext(client, { act, agent }));
      return req.headers['authorization'];
    };
    expect(await as('alice')).toMatch(/^Bearer at-\d+-code-alice$/);
    expect(await as('bob')).toMatch(/^Bearer at-\d+-code-bob$/);
    expect(await codeOf(as('carol'))).toBe('connection_expired');
    expect(await codeOf(as(undefined, 'bot'))).toBe('connection_expired');
    // A record stored under alice's name but for another principal is refused.
    const name = connectionCredentialName('mail', 'alice');
    const rec = vault.data.get(name) as ResolvedCredential;
    vault.data.set(name, {
      ...rec,
      version: rec.version + 1,
      fields: { ...rec.fields, principal: 'bob' },
    });
    expect(await codeOf(as('alice'))).toBe('connection_expired');
  });

  it('401: refreshes once (single-flight), stores the rotated refresh token', async () => {
    const vault = memoryVault();
    const m = make(vault);
    await connect(m, 'alice');
    const name = connectionCredentialName('mail', 'alice');
    const first = vault.data.get(name)?.fields['refresh_token'];
    const ctxs = Array.from({ length: 5 }, () => fakeContext(client, { act: 'alice' }));
    for (const c of ctxs) await m.apply(outbound('GET', 'https://a/x'), c);
    for (const c of ctxs) expect(await m.onUnauthorized?.(c)).toBe(true);
    delayMs = 50;
    forms.length = 0;
    const reqs = ctxs.map(() => outbound('GET', 'https://a/x'));
    await Promise.all(reqs.map((r, i) => m.apply(r, ctxs[i] as (typeof ctxs)[number])));
    expect(forms.map((f) => f.get('grant_type'))).toEqual(['refresh_token']);
    expect(new Set(reqs.map((r) => r.headers['authorization'])).size).toBe(1);
    const second = vault.data.get(name)?.fields['refresh_token'];
    expect(second).not.toBe(first);
    // The new refresh token works next time.
    await m.onUnauthorized?.(ctxs[0] as (typeof ctxs)[number]);
    await m.apply(outbound('GET', 'https://a/x'), ctxs[0] as (typeof ctxs)[number]);
    expect(vault.data.get(name)?.fields['refresh_token']).not.toBe(second);
  });

  it('a rejected refresh token: connection_expired, then no more calls until reconnected', async () => {
    const vault = memoryVault();
    const m = make(vault);
    await connect(m, 'bob');
    refreshTokens.delete(
      vault.data.get(connectionCredentialName('mail', 'bob'))?.fields['refresh_token'] as string,
    );
    const ctx = fakeContext(client, { act: 'bob' });
    await m.apply(outbound('GET', 'https://a/x'), ctx);
    await m.onUnauthorized?.(ctx);
    forms.length = 0;
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), ctx))).toBe('connection_expired');
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), ctx))).toBe('connection_expired');
    expect(forms).toHaveLength(1);
    await connect(m, 'bob');
    const req = outbound('GET', 'https://a/x');
    await m.apply(req, ctx);
    expect(req.headers['authorization']).toMatch(/code-bob$/);
  });

  it('list and remove', async () => {
    const m = make(memoryVault());
    await connect(m, 'alice');
    await connect(m, 'bob@example.com');
    expect((await m.connections.list()).map((c) => c.principal)).toEqual([
      'alice',
      'bob@example.com',
    ]);
    await m.connections.remove('alice');
    expect((await m.connections.list()).map((c) => c.principal)).toEqual(['bob@example.com']);
    expect(await codeOf(m.connections.remove('alice'))).toBe('not_found');
    expect(connectionCredentialName('mail', 'bob@example.com')).toMatch(
      /^oauth2\.mail\.[0-9a-f]{40}$/,
    );
  });
});
