// oauth2_client_credentials against a loopback token endpoint: client authentication
// methods and parameters, caching per credential version, single-flight, 401 invalidation,
// secrets reported, and failures that never echo the endpoint.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import type { Mechanic, ResolvedCredential } from './mechanic.js';
import { oauth2ClientCredentialsMechanic as def } from './oauth2-client-credentials.js';
import { fakeContext, outbound } from './test/fake-context.js';

interface Seen {
  authorization: string | undefined;
  form: URLSearchParams;
}

let server: Server;
let url = '';
const seen: Seen[] = [];
let delayMs = 0;
let status = 200;
let expiresIn = 3600;
let n = 0;

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const form = new URLSearchParams(await body(req));
      seen.push({ authorization: req.headers.authorization, form });
      await new Promise((r) => setTimeout(r, delayMs));
      res.setHeader('content-type', 'application/json');
      if (status !== 200) {
        res.statusCode = status;
        res.end(JSON.stringify({ error: 'invalid_client', error_description: 'ECHO-SECRET-XYZ' }));
        return;
      }
      res.end(
        JSON.stringify({
          access_token: `at-${++n}-abcdefgh`,
          token_type: 'Bearer',
          expires_in: expiresIn,
        }),
      );
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

beforeEach(() => {
  seen.length = 0;
  delayMs = 0;
  status = 200;
  expiresIn = 3600;
});

const cred = (version = 1, secret = 's3cr3t value+/'): ResolvedCredential => ({
  name: 'client',
  version,
  fields: { client_id: 'my client', client_secret: secret },
});

function make(options: Record<string, unknown> = {}, clock: () => number = Date.now): Mechanic {
  return def.create(
    'svc',
    def.optionsSchema.parse({ credential: 'client', token_url: url, ...options }),
    { clock },
  );
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

describe('oauth2_client_credentials', () => {
  it('options: https or loopback token URLs, durations, auth methods', () => {
    const parse = (o: Record<string, unknown>) =>
      def.optionsSchema.safeParse({ credential: 'c', token_url: 'https://as.example/token', ...o });
    expect(parse({}).success).toBe(true);
    expect(parse({ token_url: 'http://as.example/token' }).success).toBe(false);
    expect(parse({ token_url: 'http://127.0.0.1:8/token' }).success).toBe(true);
    expect(parse({ auth_method: 'private_key_jwt' }).success).toBe(false);
    expect(parse({ refresh_before: '30' }).success).toBe(false);
    expect(parse({ unknown: 1 }).success).toBe(false);
    const ok = parse({ resource: 'https://api.example/' });
    expect(ok.success && ok.data.resource).toEqual(['https://api.example/']);
    expect(ok.success && ok.data.refresh_before).toBe(30_000);
  });

  it('client_secret_basic: form-encoded id and secret in Basic; scope, audience, resource sent', async () => {
    const m = make({ scope: 'a b', audience: 'aud-1', resource: ['https://r1/', 'https://r2/'] });
    const req = outbound('GET', 'https://api.example/x');
    const result = await m.apply(req, fakeContext(cred()));
    expect(req.headers['authorization']).toBe('Bearer at-' + n + '-abcdefgh');
    const s = seen[0] as Seen;
    const basic = Buffer.from((s.authorization ?? '').slice(6), 'base64').toString();
    expect(basic).toBe('my+client:s3cr3t+value%2B%2F'.replace(/\+/g, '%20'));
    expect(s.form.get('grant_type')).toBe('client_credentials');
    expect(s.form.get('scope')).toBe('a b');
    expect(s.form.get('audience')).toBe('aud-1');
    expect(s.form.getAll('resource')).toEqual(['https://r1/', 'https://r2/']);
    expect(s.form.has('client_secret')).toBe(false);
    // The access token travels upstream; the client secret goes to the token endpoint only,
    // so it is in no response matcher (issue 10).
    expect(result.secrets).toEqual([`at-${n}-abcdefgh`]);
    expect(result.credential).toEqual({ name: 'client', version: 1 });
    await m.close?.();
  });

  it('client_secret_post: id and secret in the form, no Authorization', async () => {
    const m = make({ auth_method: 'client_secret_post' });
    await m.apply(outbound('GET', 'https://api.example/x'), fakeContext(cred()));
    const s = seen[0] as Seen;
    expect(s.authorization).toBeUndefined();
    expect(s.form.get('client_id')).toBe('my client');
    expect(s.form.get('client_secret')).toBe('s3cr3t value+/');
    await m.close?.();
  });

  it('caches until refresh_before the expiry, per credential version', async () => {
    let now = 1_000_000;
    const m = make({ refresh_before: '60s' }, () => now);
    const get = async (c: ResolvedCredential) => {
      const req = outbound('GET', 'https://api.example/x');
      await m.apply(req, fakeContext(c, { now }));
      return req.headers['authorization'];
    };
    const t1 = await get(cred());
    now += 3600_000 - 61_000;
    expect(await get(cred())).toBe(t1);
    now += 2_000;
    const t2 = await get(cred());
    expect(t2).not.toBe(t1);
    expect(seen).toHaveLength(2);
    // A rotated client secret (new version) gets a token of its own.
    const t3 = await get(cred(2, 'rotated-secret'));
    expect(t3).not.toBe(t2);
    expect(seen).toHaveLength(3);
    await m.close?.();
  });

  it('single-flight: concurrent requests share one token request', async () => {
    delayMs = 100;
    const m = make();
    const reqs = Array.from({ length: 25 }, () => outbound('GET', 'https://api.example/x'));
    await Promise.all(reqs.map((r) => m.apply(r, fakeContext(cred()))));
    expect(seen).toHaveLength(1);
    expect(new Set(reqs.map((r) => r.headers['authorization'])).size).toBe(1);
    await m.close?.();
  });

  it('onUnauthorized drops the token that failed (only that one) and asks for one retry', async () => {
    const m = make();
    const ctxA = fakeContext(cred());
    const ctxB = fakeContext(cred());
    const a = outbound('GET', 'https://api.example/x');
    const b = outbound('GET', 'https://api.example/x');
    await m.apply(a, ctxA);
    await m.apply(b, ctxB);
    expect(await m.onUnauthorized?.(ctxA)).toBe(true);
    const a2 = outbound('GET', 'https://api.example/x');
    await m.apply(a2, ctxA);
    expect(a2.headers['authorization']).not.toBe(a.headers['authorization']);
    // B failed with the old token too: the fresh token A just fetched is kept.
    expect(await m.onUnauthorized?.(ctxB)).toBe(true);
    const b2 = outbound('GET', 'https://api.example/x');
    await m.apply(b2, ctxB);
    expect(b2.headers['authorization']).toBe(a2.headers['authorization']);
    expect(seen).toHaveLength(2);
    await m.close?.();
  });

  it('endpoint failures: credential_unavailable, not cached, never echoing the body', async () => {
    status = 401;
    const m = make();
    let message = '';
    try {
      await m.apply(outbound('GET', 'https://api.example/x'), fakeContext(cred()));
    } catch (err) {
      expect(isNexusError(err) && err.code).toBe('credential_unavailable');
      message = (err as Error).message;
    }
    expect(message).not.toMatch(/ECHO-SECRET|s3cr3t/);
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), fakeContext(cred())))).toBe(
      'credential_unavailable',
    );
    expect(seen).toHaveLength(2);
    status = 500;
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), fakeContext(cred())))).toBe(
      'credential_unavailable',
    );
    await m.close?.();
  });

  it('a slow endpoint times out as credential_unavailable', async () => {
    delayMs = 1500;
    const m = make({ timeout: '1s' });
    const started = Date.now();
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), fakeContext(cred())))).toBe(
      'credential_unavailable',
    );
    expect(Date.now() - started).toBeLessThan(1400);
    await m.close?.();
  });

  it('missing client fields: credential_unavailable without a token request', async () => {
    const m = make();
    const c: ResolvedCredential = { name: 'client', version: 1, fields: { client_id: 'x' } };
    expect(await codeOf(m.apply(outbound('GET', 'https://a/x'), fakeContext(c)))).toBe(
      'credential_unavailable',
    );
    expect(seen).toHaveLength(0);
    await m.close?.();
  });
});
