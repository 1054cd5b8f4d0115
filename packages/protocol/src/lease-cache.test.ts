// The verified-lease cache inside verifyRequestSignature (issue 7, performance): a lease
// JWT is verified once per token, yet every request still gets the expiry, key, issuer,
// audience and revocation checks with the codes of a full verification.
import { generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { agentSub, signLease } from './lease.js';
import {
  generateAgentKey,
  signRequest,
  verifyRequestSignature,
  webCryptoVerify,
  type VerifyRequestSignatureOptions,
} from './profile.js';
import { code } from './test/code.js';

const ISSUER = 'https://nexus.example';
const NOW_MS = 1_785_000_000_000;
const NOW = NOW_MS / 1000;
const URL_ = 'https://nexus.example/github/user';
const authority = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });

async function signed(
  now = NOW_MS,
  jti = `lease-${Math.random().toString(36).slice(2)}-0123456789abcdef`,
) {
  const agent = await generateAgentKey('ed25519');
  const lease = await signLease(
    {
      iss: ISSUER,
      sub: agentSub('nexus.example', 'alice'),
      aud: ISSUER,
      iat: NOW - 10,
      nbf: NOW - 10,
      exp: NOW + 120,
      jti,
      scope: 'triage',
      cnf: { jwk: agent.publicJwk },
    },
    authority.privateKey,
    { kid: 'k1', alg: 'EdDSA' },
  );
  const sign = async (at: number) => ({
    ...(await signRequest({
      method: 'GET',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => at,
    })),
  });
  return { lease, agent, headers: await sign(now), sign };
}

const options = (
  headers: Record<string, string>,
  extra: Partial<VerifyRequestSignatureOptions> = {},
): VerifyRequestSignatureOptions => ({
  method: 'GET',
  url: URL_,
  headers,
  issuer: ISSUER,
  audience: ISSUER,
  getAuthorityKey: async (h) => (h.kid === 'k1' ? authority.publicKey : undefined),
  now: () => NOW_MS,
  ...extra,
});

describe('verified-lease cache', () => {
  it('a second request on the same lease verifies, with frozen shared claims', async () => {
    const { headers } = await signed();
    const a = await verifyRequestSignature(options(headers));
    const b = await verifyRequestSignature(options(headers));
    expect(b.claims).toBe(a.claims);
    expect(Object.isFrozen(b.claims)).toBe(true);
    expect(Object.isFrozen(b.claims.cnf.jwk)).toBe(true);
  });

  it('expiry is checked against the clock on every request', async () => {
    const { headers, sign } = await signed();
    expect(await code(verifyRequestSignature(options(headers)))).toBeUndefined();
    const later = NOW_MS + 200_000; // past exp + 30 s skew
    expect(
      await code(verifyRequestSignature(options(await sign(NOW_MS), { now: () => later }))),
    ).toBe('lease_expired');
  });

  it('a lease is refused once its Authority key is gone or replaced', async () => {
    const { headers } = await signed();
    expect(await code(verifyRequestSignature(options(headers)))).toBeUndefined();
    expect(
      await code(
        verifyRequestSignature(options(headers, { getAuthorityKey: async () => undefined })),
      ),
    ).toBe('lease_invalid');
    expect(
      await code(
        verifyRequestSignature(options(headers, { getAuthorityKey: async () => other.publicKey })),
      ),
    ).toBe('lease_invalid');
  });

  it('issuer and audience are part of the hit', async () => {
    const { headers } = await signed();
    expect(await code(verifyRequestSignature(options(headers)))).toBeUndefined();
    expect(
      await code(verifyRequestSignature(options(headers, { audience: 'https://other.example' }))),
    ).toBe('lease_invalid');
    expect(
      await code(verifyRequestSignature(options(headers, { issuer: 'https://other.example' }))),
    ).toBe('lease_invalid');
  });

  it('revocation is checked on every request, hit or miss', async () => {
    const { headers } = await signed();
    expect(await code(verifyRequestSignature(options(headers)))).toBeUndefined();
    expect(await code(verifyRequestSignature(options(headers, { isRevoked: () => true })))).toBe(
      'lease_revoked',
    );
  });

  it('synchronous key and revocation hooks (the proxy passes them) keep every check', async () => {
    const { headers } = await signed();
    const sync = (extra: Partial<VerifyRequestSignatureOptions> = {}) =>
      options(headers, {
        getAuthorityKey: (h) => (h.kid === 'k1' ? authority.publicKey : undefined),
        isRevoked: () => false,
        ...extra,
      });
    expect(await code(verifyRequestSignature(sync()))).toBeUndefined();
    expect(await code(verifyRequestSignature(sync()))).toBeUndefined(); // a hit
    expect(await code(verifyRequestSignature(sync({ isRevoked: () => true })))).toBe(
      'lease_revoked',
    );
    expect(await code(verifyRequestSignature(sync({ getAuthorityKey: () => undefined })))).toBe(
      'lease_invalid',
    );
    const throwing = () => {
      throw new Error('unknown kid');
    };
    expect(await code(verifyRequestSignature(sync({ getAuthorityKey: throwing })))).toBe(
      'lease_invalid',
    );
    expect(
      await code(verifyRequestSignature(sync({ getAuthorityKey: () => other.publicKey }))),
    ).toBe('lease_invalid');
  });

  it('the verifySignature hook decides the signature, with the base and the decoded bytes', async () => {
    const { headers } = await signed();
    const seen: Array<[string, string, number]> = [];
    const verified = await verifyRequestSignature(
      options(headers, {
        verifySignature: (alg, key, base, sig) => {
          seen.push([alg, base, sig.length]);
          return webCryptoVerify(alg, key, base, sig);
        },
      }),
    );
    expect(seen).toEqual([['ed25519', verified.signatureBase, 64]]);
    expect(
      await code(
        verifyRequestSignature(options(headers, { verifySignature: () => Promise.resolve(false) })),
      ),
    ).toBe('signature_invalid');
  });

  it('the request signature is still checked on a hit', async () => {
    const { headers } = await signed();
    expect(await code(verifyRequestSignature(options(headers)))).toBeUndefined();
    const tampered = { ...headers, 'nexus-intent': '"something else"' };
    expect(await code(verifyRequestSignature(options(tampered)))).toBe('signature_invalid');
  });

  it('an imported agent key serves only its own lease, even under the same jti', async () => {
    const jti = 'lease-shared-jti-0123456789abcdef';
    const a = await signed(NOW_MS, jti);
    const b = await signed(NOW_MS, jti);
    // Lease A verified: its agent key is imported and kept with A's cache entry.
    expect(await code(verifyRequestSignature(options(a.headers)))).toBeUndefined();
    // Lease B (same jti, another cnf key) on a request signed with A's key: the base is
    // right, only the key is not B's. A cached key for A would accept it.
    const crossed = await signRequest({
      method: 'GET',
      url: URL_,
      lease: b.lease,
      key: a.agent.privateKey,
      now: () => NOW_MS,
    });
    expect(await code(verifyRequestSignature(options(crossed)))).toBe('signature_invalid');
    // B's own requests verify with B's key, and A's still with A's.
    expect(await code(verifyRequestSignature(options(b.headers)))).toBeUndefined();
    expect(await code(verifyRequestSignature(options(await a.sign(NOW_MS))))).toBeUndefined();
  });
});
