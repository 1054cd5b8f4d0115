// Lease signing and verification: each profile rule yields its code.
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  agentNameFromSub,
  agentSub,
  signLease,
  signatureAlgorithmForJwk,
  verifyLease,
  type LeaseClaims,
} from './lease.js';
import { generateAgentKey } from './profile.js';
import { code } from './test/code.js';

const ISSUER = 'https://nexus.example';
const NOW = 1_785_000_000;
const authority = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
const authorityEs = await generateKeyPair('ES256');
const agent = await generateAgentKey('ed25519');

const claims = (o: Partial<LeaseClaims> = {}): LeaseClaims => ({
  iss: ISSUER,
  sub: agentSub('nexus.example', 'alice'),
  aud: ISSUER,
  iat: NOW - 10,
  nbf: NOW - 10,
  exp: NOW + 900,
  jti: 'AAAAAAAAAAAAAAAAAAAAAA',
  scope: 'triage',
  cnf: { jwk: agent.publicJwk },
  ...o,
});

const keys: Record<string, unknown> = { k1: authority.publicKey, k2: authorityEs.publicKey };
const verify = (token: string, now = NOW) =>
  verifyLease(token, {
    getKey: async (h) => keys[h.kid ?? ''] as CryptoKeyLike,
    issuer: ISSUER,
    audience: ISSUER,
    now: () => now * 1000,
  });
type CryptoKeyLike = Awaited<ReturnType<Parameters<typeof verifyLease>[1]['getKey']>>;

const raw = (header: object, payload: object, sig = 'c2ln') =>
  `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`;

describe('verifyLease', () => {
  it('accepts a lease from signLease (EdDSA and ES256)', async () => {
    const t = await signLease(claims(), authority.privateKey, { kid: 'k1', alg: 'EdDSA' });
    const v = await verify(t);
    expect(v.claims.sub).toBe('nexus://nexus.example/agent/alice');
    expect(v.protectedHeader).toMatchObject({ typ: 'wit+jwt', kid: 'k1', alg: 'EdDSA' });
    const t2 = await signLease(claims(), authorityEs.privateKey, { kid: 'k2', alg: 'ES256' });
    expect(await code(verify(t2))).toBeUndefined();
  });

  const jwt = (header: object, payload: object, key = authority.privateKey) =>
    new SignJWT(payload as Record<string, unknown>)
      .setProtectedHeader(header as { alg: string })
      .sign(key);
  const H = { alg: 'EdDSA', kid: 'k1', typ: 'wit+jwt' };

  it.each<[string, () => Promise<string>, string | undefined, number?]>([
    ['typ JWT', () => jwt({ ...H, typ: 'JWT' }, claims()), 'lease_invalid'],
    // RFC 7515 §4.1.9: `application/` may be omitted, media types ignore case (issue 16).
    [
      'typ application/wit+jwt',
      () => jwt({ ...H, typ: 'application/wit+jwt' }, claims()),
      undefined,
    ],
    ['typ WIT+JWT', () => jwt({ ...H, typ: 'WIT+JWT' }, claims()), undefined],
    ['typ application/jwt', () => jwt({ ...H, typ: 'application/jwt' }, claims()), 'lease_invalid'],
    ['typ text/wit+jwt', () => jwt({ ...H, typ: 'text/wit+jwt' }, claims()), 'lease_invalid'],
    ['typ absent', () => jwt({ alg: 'EdDSA', kid: 'k1' }, claims()), 'lease_invalid'],
    [
      'alg none',
      async () => raw({ alg: 'none', kid: 'k1', typ: 'wit+jwt' }, claims(), ''),
      'lease_invalid',
    ],
    [
      'alg HS256',
      async () => raw({ alg: 'HS256', kid: 'k1', typ: 'wit+jwt' }, claims()),
      'lease_invalid',
    ],
    ['no kid', () => jwt({ alg: 'EdDSA', typ: 'wit+jwt' }, claims()), 'lease_invalid'],
    ['unknown kid', () => jwt({ ...H, kid: 'zz' }, claims()), 'lease_invalid'],
    ['wrong key', () => jwt({ ...H, kid: 'k2' }, claims()), 'lease_invalid'],
    ['bad signature', async () => (await jwt(H, claims())).slice(0, -4) + 'AAAA', 'lease_invalid'],
    ['iss', () => jwt(H, claims({ iss: 'https://x' })), 'lease_invalid'],
    ['aud', () => jwt(H, claims({ aud: 'https://x' })), 'lease_invalid'],
    ['aud array', () => jwt(H, claims({ aud: ['https://x', ISSUER] })), undefined],
    ['sub', () => jwt(H, claims({ sub: 'alice' })), 'lease_invalid'],
    ['jti short', () => jwt(H, claims({ jti: 'abc' })), 'lease_invalid'],
    ['scope missing', () => jwt(H, { ...claims(), scope: undefined }), 'lease_invalid'],
    ['iat float', () => jwt(H, claims({ iat: 1.5 })), 'lease_invalid'],
    ['act without sub', () => jwt(H, claims({ act: {} as { sub: string } })), 'lease_invalid'],
    [
      'expired',
      () => jwt(H, claims({ iat: NOW - 100, nbf: NOW - 100, exp: NOW - 31 })),
      'lease_expired',
    ],
    [
      'expired within skew',
      () => jwt(H, claims({ iat: NOW - 100, nbf: NOW - 100, exp: NOW - 29 })),
      undefined,
    ],
    ['nbf future', () => jwt(H, claims({ nbf: NOW + 31 })), 'lease_not_yet_valid'],
    ['cnf missing', () => jwt(H, { ...claims(), cnf: undefined }), 'lease_invalid'],
    [
      'cnf private',
      () => jwt(H, claims({ cnf: { jwk: { ...agent.publicJwk, d: 'AAAA' } } })),
      'lease_invalid',
    ],
    [
      'cnf no alg',
      () => jwt(H, claims({ cnf: { jwk: { ...agent.publicJwk, alg: undefined } as never } })),
      'lease_invalid',
    ],
    [
      'cnf wrong alg',
      () => jwt(H, claims({ cnf: { jwk: { ...agent.publicJwk, alg: 'ES256' } } })),
      'lease_invalid',
    ],
    ['garbage', async () => 'not.a.jwt!', 'lease_invalid'],
  ])('%s', async (_name, make, expected) => {
    expect(await code(verify(await make()))).toBe(expected);
  });

  it('checks iss before exp (first failing step wins)', async () => {
    const t = await jwt(H, claims({ iss: 'https://x', exp: NOW - 1000 }));
    expect(await code(verify(t))).toBe('lease_invalid');
  });
  it('a throwing key resolver gives lease_invalid', async () => {
    const t = await jwt(H, claims());
    const r = verifyLease(t, {
      getKey: async () => {
        throw new Error('boom');
      },
      issuer: ISSUER,
      audience: ISSUER,
      now: () => NOW * 1000,
    });
    expect(await code(r)).toBe('lease_invalid');
  });
  it('an HMAC key from the resolver is refused', async () => {
    const t = await jwt(H, claims());
    const r = verifyLease(t, {
      getKey: async () => new Uint8Array(32),
      issuer: ISSUER,
      audience: ISSUER,
      now: () => NOW * 1000,
    });
    expect(await code(r)).toBe('lease_invalid');
  });
});

describe('helpers', () => {
  it('agentSub / agentNameFromSub', () => {
    expect(agentSub('example.com', 'triage-bot')).toBe('nexus://example.com/agent/triage-bot');
    expect(agentNameFromSub('nexus://example.com/agent/triage-bot')).toBe('triage-bot');
    expect(agentNameFromSub('nexus://example.com/agent/a/b')).toBeUndefined();
    expect(() => agentSub('ex/ample', 'x')).toThrow();
  });
  it('signatureAlgorithmForJwk', async () => {
    expect(signatureAlgorithmForJwk(agent.publicJwk)).toBe('ed25519');
    expect(signatureAlgorithmForJwk((await generateAgentKey('ecdsa-p256')).publicJwk)).toBe(
      'ecdsa-p256-sha256',
    );
    const es = (await exportJWK(authorityEs.publicKey)) as JWK;
    expect(() => signatureAlgorithmForJwk(es)).toThrow(); // no alg
    expect(() => signatureAlgorithmForJwk({ ...es, alg: 'ES256', crv: 'P-384' })).toThrow();
    expect(() => signatureAlgorithmForJwk(null)).toThrow();
  });
  it('signLease refuses other algorithms', async () => {
    await expect(
      signLease(claims(), authority.privateKey, { kid: 'k1', alg: 'HS256' as never }),
    ).rejects.toMatchObject({ code: 'request_invalid' });
  });
});
