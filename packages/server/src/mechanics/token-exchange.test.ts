// Unit tests for token_exchange over an undici MockAgent: the RFC 8693 form (subject token =
// the lease, actor token only for delegation), client authentication, the cache per lease
// `jti` capped at the lease's expiry, and secrets.
import { describe, expect, it } from 'vitest';
import { MockAgent } from 'undici';
import type { LeaseClaims } from '@nexus-proxy/protocol';
import { isNexusError } from '@nexus-proxy/protocol';
import type { MechanicContext, ResolvedCredential } from './mechanic.js';
import { tokenExchangeMechanic } from './token-exchange.js';
import { fakeContext, outbound } from './test/fake-context.js';

const NOW = Date.parse('2025-01-02T03:04:05Z');
const CLIENT: ResolvedCredential = {
  name: 'cred',
  version: 1,
  fields: { client_id: 'nexus-client', client_secret: 'sts-secret-123' },
};

function leaseCtx(jti: string, act?: string, clock = NOW): MechanicContext {
  const claims = {
    iss: 'https://nexus',
    sub: 'nexus://nexus.local/agent/bot',
    aud: 'https://nexus',
    iat: clock / 1000,
    nbf: clock / 1000,
    exp: clock / 1000 + 900,
    jti,
    scope: 'r',
    cnf: { jwk: {} },
    ...(act === undefined ? {} : { act: { sub: act } }),
  } as unknown as LeaseClaims;
  return { ...fakeContext(CLIENT), lease: `lease.${jti}.sig`, claims };
}

function sts(reply: (form: URLSearchParams, auth: string) => unknown, times = 10) {
  const mock = new MockAgent();
  mock.disableNetConnect();
  const forms: URLSearchParams[] = [];
  mock
    .get('https://sts.example')
    .intercept({ path: '/token', method: 'POST' })
    .reply(200, (o) => {
      const form = new URLSearchParams(String(o.body));
      forms.push(form);
      return reply(form, (o.headers as Record<string, string>)['authorization'] ?? '') as object;
    })
    .times(times);
  return { mock, forms };
}

describe('token_exchange', () => {
  const base = { token_url: 'https://sts.example/token', credential: 'cred', audience: 'orders' };

  it('sends the lease as subject token with client_secret_basic and caches per lease', async () => {
    const auths: string[] = [];
    const { mock, forms } = sts((f, a) => {
      auths.push(a);
      return { access_token: `dst-${f.get('subject_token')}`, expires_in: 600 };
    });
    const m = tokenExchangeMechanic.create('svc', tokenExchangeMechanic.optionsSchema.parse(base), {
      clock: () => NOW,
      dispatcher: mock,
    });
    const req = outbound('GET', 'https://orders/x');
    const result = await m.apply(req, leaseCtx('j1', 'user:alice'));
    expect(req.headers['authorization']).toBe('Bearer dst-lease.j1.sig');
    const form = forms[0] as URLSearchParams;
    expect(Object.fromEntries(form)).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: 'lease.j1.sig',
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'orders',
    });
    expect(auths[0]).toBe(`Basic ${Buffer.from('nexus-client:sts-secret-123').toString('base64')}`);
    // The client id and secret authenticate to the token service only (issue 10).
    expect(result.secrets).toEqual(['dst-lease.j1.sig']);
    await m.apply(outbound('GET', 'https://orders/y'), leaseCtx('j1', 'user:alice'));
    expect(forms).toHaveLength(1);
    await m.apply(outbound('GET', 'https://orders/y'), leaseCtx('j2'));
    expect(forms).toHaveLength(2);
  });

  it('actor: true sends the lease as actor_token only when the lease carries act; client_secret_post', async () => {
    const { mock, forms } = sts(() => ({ access_token: 'dst-abcdefgh' }));
    const m = tokenExchangeMechanic.create(
      'svc',
      tokenExchangeMechanic.optionsSchema.parse({
        ...base,
        actor: true,
        client_auth: 'client_secret_post',
        scope: 'orders.read',
      }),
      { clock: () => NOW, dispatcher: mock },
    );
    await m.apply(outbound('GET', 'https://orders/x'), leaseCtx('a1', 'user:alice'));
    await m.apply(outbound('GET', 'https://orders/x'), leaseCtx('a2'));
    expect(forms[0]?.get('actor_token')).toBe('lease.a1.sig');
    expect(forms[0]?.get('actor_token_type')).toBe('urn:ietf:params:oauth:token-type:jwt');
    expect(forms[0]?.get('client_secret')).toBe('sts-secret-123');
    expect(forms[0]?.get('scope')).toBe('orders.read');
    expect(forms[1]?.has('actor_token')).toBe(false);
  });

  it('never caches past the lease expiry; no lease is credential_unavailable', async () => {
    let now = NOW;
    const { mock, forms } = sts(() => ({ access_token: 'dst-abcdefgh', expires_in: 86_400 }));
    const m = tokenExchangeMechanic.create('svc', tokenExchangeMechanic.optionsSchema.parse(base), {
      clock: () => now,
      dispatcher: mock,
    });
    await m.apply(outbound('GET', 'https://o/'), leaseCtx('e1'));
    now = NOW + 900_000; // the lease's exp
    await m.apply(outbound('GET', 'https://o/'), leaseCtx('e1'));
    expect(forms).toHaveLength(2);
    try {
      await m.apply(outbound('GET', 'https://o/'), fakeContext(CLIENT));
      expect.unreachable();
    } catch (err) {
      expect(isNexusError(err) && err.code).toBe('credential_unavailable');
    }
  });
});
