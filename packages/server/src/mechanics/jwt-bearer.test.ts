// Unit tests for the token mechanics over an undici MockAgent (no sockets): jwt_bearer and
// github_app sign what their providers expect, with the injected clock; every credential
// field read and every derived token is reported as a secret; failures are stable codes.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MockAgent } from 'undici';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { isNexusError } from '@nexus-proxy/protocol';
import { githubAppMechanic } from './github-app.js';
import { jwtBearerMechanic } from './jwt-bearer.js';
import type { MechanicDefinition, ResolvedCredential } from './mechanic.js';
import { fakeContext, outbound } from './test/fake-context.js';

const NOW = Date.parse('2025-01-02T03:04:05Z');
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const ecPem = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

function create<O>(def: MechanicDefinition<O>, options: unknown, dispatcher: MockAgent) {
  return def.create('svc', def.optionsSchema.parse(options), { clock: () => NOW, dispatcher });
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

function cred(fields: Record<string, string>, version = 1): ResolvedCredential {
  return { name: 'cred', version, fields };
}

describe('jwt_bearer', () => {
  const options = {
    credential: 'cred',
    token_url: 'https://oauth2.example/token',
    scope: 'a b',
    lifetime: '10m',
  };
  const fields = { private_key: PEM, client_email: 'sa@example.iam', key_id: 'k1' };

  it('signs the assertion with the injected clock and caches the token per version', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    const forms: URLSearchParams[] = [];
    mock
      .get('https://oauth2.example')
      .intercept({ path: '/token', method: 'POST' })
      .reply(200, (o) => {
        forms.push(new URLSearchParams(String(o.body)));
        return { access_token: `tok-${forms.length}-abcdefgh`, expires_in: 3600 };
      })
      .times(2);
    const m = create(jwtBearerMechanic, options, mock);
    const req = outbound('GET', 'https://www.googleapis.com/x');
    const result = await m.apply(req, fakeContext(cred(fields)));
    expect(req.headers['authorization']).toBe('Bearer tok-1-abcdefgh');
    // The key and the assertion go to the token endpoint only (issue 10).
    expect(result.secrets).toEqual(['tok-1-abcdefgh']);
    const form = forms[0] as URLSearchParams;
    expect(form.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
    const assertion = form.get('assertion') as string;
    expect(decodeProtectedHeader(assertion)).toEqual({ alg: 'RS256', typ: 'JWT', kid: 'k1' });
    const claims = decodeJwt(assertion);
    expect(claims).toMatchObject({
      iss: 'sa@example.iam',
      sub: 'sa@example.iam',
      aud: 'https://oauth2.example/token',
      scope: 'a b',
      iat: NOW / 1000,
      exp: NOW / 1000 + 600,
    });
    // Cached: no second token request for the same version; a new version fetches again.
    await m.apply(outbound('GET', 'https://x/y'), fakeContext(cred(fields)));
    expect(forms).toHaveLength(1);
    await m.apply(outbound('GET', 'https://x/y'), fakeContext(cred(fields, 2)));
    expect(forms).toHaveLength(2);
  });

  it('picks ES256 for a P-256 key and refuses a key that does not fit the algorithm', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    let assertion = '';
    mock
      .get('https://oauth2.example')
      .intercept({ path: '/token', method: 'POST' })
      .reply(200, (o) => {
        assertion = new URLSearchParams(String(o.body)).get('assertion') as string;
        return { access_token: 'tok-ec-abcdefgh' };
      });
    const m = create(jwtBearerMechanic, options, mock);
    await m.apply(
      outbound('GET', 'https://x/'),
      fakeContext(cred({ ...fields, private_key: ecPem })),
    );
    expect(decodeProtectedHeader(assertion).alg).toBe('ES256');
    const rs = create(jwtBearerMechanic, { ...options, algorithm: 'RS256' }, mock);
    expect(
      await codeOf(
        rs.apply(
          outbound('GET', 'https://x/'),
          fakeContext(cred({ ...fields, private_key: ecPem })),
        ),
      ),
    ).toBe('credential_unavailable');
    expect(
      await codeOf(
        rs.apply(outbound('GET', 'https://x/'), fakeContext(cred({ ...fields, private_key: 'x' }))),
      ),
    ).toBe('credential_unavailable');
  });

  it('token endpoint errors: refusal and non-bearer tokens are credential_unavailable', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    const pool = mock.get('https://oauth2.example');
    pool.intercept({ path: '/token', method: 'POST' }).reply(400, { error: 'invalid_grant' });
    pool
      .intercept({ path: '/token', method: 'POST' })
      .reply(200, { access_token: 'abcdefghijk', token_type: 'mac' });
    const m = create(jwtBearerMechanic, options, mock);
    for (let i = 0; i < 2; i++) {
      expect(await codeOf(m.apply(outbound('GET', 'https://x/'), fakeContext(cred(fields))))).toBe(
        'credential_unavailable',
      );
    }
  });

  it('options: token_url must be https (or loopback http); lifetime at most 1h', () => {
    const parse = (o: object) => jwtBearerMechanic.optionsSchema.safeParse({ ...options, ...o });
    expect(parse({ token_url: 'http://oauth2.example/token' }).success).toBe(false);
    expect(parse({ token_url: 'http://127.0.0.1:8080/token' }).success).toBe(true);
    expect(parse({ lifetime: '2h' }).success).toBe(false);
    expect(parse({ extra: 1 }).success).toBe(false);
  });
});

describe('github_app', () => {
  const options = {
    credential: 'cred',
    installation_id: 42,
    api_base: 'https://gh.example/api/v3',
  };
  const fields = { app_id: '123456', private_key: PEM };

  it('app JWT (iat-60, exp <= 10 min) -> installation token, cached until shortly before expires_at', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    const seen: Array<{ auth: string; body: string }> = [];
    const expiresAt = new Date(NOW + 3600_000).toISOString();
    mock
      .get('https://gh.example')
      .intercept({ path: '/api/v3/app/installations/42/access_tokens', method: 'POST' })
      .reply(201, (o) => {
        const headers = o.headers as Record<string, string>;
        seen.push({ auth: headers['authorization'] ?? '', body: String(o.body) });
        return { token: `ghs_${seen.length}abcdefgh`, expires_at: expiresAt };
      })
      .times(2);
    const m = create(githubAppMechanic, options, mock);
    const req = outbound('GET', 'https://gh.example/api/v3/repos/a/b');
    const result = await m.apply(req, fakeContext(cred(fields)));
    expect(req.headers['authorization']).toBe('token ghs_1abcdefgh');
    expect(result.secrets).toEqual(['ghs_1abcdefgh']);
    const jwt = (seen[0]?.auth ?? '').replace(/^Bearer /, '');
    expect(decodeProtectedHeader(jwt).alg).toBe('RS256');
    const claims = decodeJwt(jwt);
    expect(claims.iss).toBe('123456');
    expect(claims.iat).toBe(NOW / 1000 - 60);
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(600);
    await m.apply(outbound('GET', 'https://gh.example/x'), fakeContext(cred(fields)));
    expect(seen).toHaveLength(1);

    // A 401 upstream drops the cached token; the retry fetches a new one.
    expect(await m.onUnauthorized?.(fakeContext(cred(fields)))).toBe(true);
    const retry = outbound('GET', 'https://gh.example/x');
    await m.apply(retry, fakeContext(cred(fields)));
    expect(retry.headers['authorization']).toBe('token ghs_2abcdefgh');
    expect(seen).toHaveLength(2);
  });

  it('scheme bearer, narrowed permissions, and an unknown installation', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    const pool = mock.get('https://gh.example');
    let body = '';
    pool
      .intercept({ path: '/api/v3/app/installations/42/access_tokens', method: 'POST' })
      .reply(201, (o) => {
        body = String(o.body);
        return { token: 'ghs_zzzzzzzzzz', expires_at: new Date(NOW + 3600_000).toISOString() };
      });
    pool
      .intercept({ path: '/api/v3/app/installations/7/access_tokens', method: 'POST' })
      .reply(404, { message: 'Not Found' });
    const m = create(
      githubAppMechanic,
      { ...options, scheme: 'bearer', permissions: { issues: 'read' }, repositories: ['app'] },
      mock,
    );
    const req = outbound('GET', 'https://gh.example/x');
    await m.apply(req, fakeContext(cred(fields)));
    expect(req.headers['authorization']).toBe('Bearer ghs_zzzzzzzzzz');
    expect(JSON.parse(body)).toEqual({ repositories: ['app'], permissions: { issues: 'read' } });
    const missing = create(githubAppMechanic, { ...options, installation_id: '7' }, mock);
    expect(
      await codeOf(
        missing.apply(outbound('GET', 'https://gh.example/x'), fakeContext(cred(fields))),
      ),
    ).toBe('credential_unavailable');
    expect(
      githubAppMechanic.optionsSchema.safeParse({ ...options, installation_id: 'abc' }).success,
    ).toBe(false);
  });
});
