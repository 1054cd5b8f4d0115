// The Nexus request profile end to end: signRequest -> verifyRequest with Ed25519 and P-256
// agent keys, the order of checks, and the signer's own refusals.
import fc from 'fast-check';
import { generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import { agentSub, signLease, type LeaseClaims } from './lease.js';
import {
  generateAgentKey,
  jwkThumbprint,
  signRequest,
  verifyRequest,
  verifyRequestBody,
  verifyRequestSignature,
  type VerifyRequestOptions,
} from './profile.js';
import { code } from './test/code.js';

const ISSUER = 'https://nexus.example';
const NOW_MS = 1_785_000_000_000;
const NOW = NOW_MS / 1000;
const authority = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
const URL_ = 'https://nexus.example/github/repos/acme/widgets/issues?state=open';

async function setup(alg: 'ed25519' | 'ecdsa-p256' = 'ed25519', o: Partial<LeaseClaims> = {}) {
  const agent = await generateAgentKey(alg);
  const lease = await signLease(
    {
      iss: ISSUER,
      sub: agentSub('nexus.example', 'alice'),
      aud: ISSUER,
      iat: NOW - 10,
      nbf: NOW - 10,
      exp: NOW + 900,
      jti: 'lease-id-0123456789abcdef',
      scope: 'triage',
      cnf: { jwk: agent.publicJwk },
      ...o,
    },
    authority.privateKey,
    { kid: 'k1', alg: 'EdDSA' },
  );
  return { agent, lease };
}

const verifier = (
  headers: Record<string, string>,
  extra: Partial<VerifyRequestOptions> = {},
): VerifyRequestOptions => ({
  method: 'POST',
  url: URL_,
  headers,
  issuer: ISSUER,
  audience: ISSUER,
  getAuthorityKey: async (h) => (h.kid === 'k1' ? authority.publicKey : undefined),
  now: () => NOW_MS,
  ...extra,
});

describe.each(['ed25519', 'ecdsa-p256'] as const)('%s agent', (alg) => {
  it('a signed POST verifies, with every field of VerifiedRequest', async () => {
    const { agent, lease } = await setup(alg);
    const body = '{"title":"x"}';
    const base = { 'content-type': 'application/json', accept: '*/*' };
    const added = await signRequest({
      method: 'post',
      url: URL_,
      headers: base,
      body,
      lease,
      key: agent.privateKey,
      intent: 'file a bug',
      now: () => NOW_MS,
    });
    expect(Object.keys(added).sort()).toEqual([
      'content-digest',
      'nexus-intent',
      'signature',
      'signature-input',
      'workload-identity-token',
    ]);
    const headers = { ...base, ...added };
    const v = await verifyRequest({ ...verifier(headers), body });
    expect(v).toMatchObject({
      agent: 'alice',
      leaseId: 'lease-id-0123456789abcdef',
      created: NOW,
      expires: NOW + 30,
      intent: 'file a bug',
      algorithm: alg === 'ed25519' ? 'ed25519' : 'ecdsa-p256-sha256',
      signature: added.signature,
      signatureInput: added['signature-input'],
      profile: 'nexus/1.1',
      label: 'wimse',
      covered: [
        '@method',
        '@path',
        '@query',
        'workload-identity-token',
        'nexus-intent',
        'content-type',
        'content-digest',
      ],
    });
    expect(v.nonce.length).toBeGreaterThanOrEqual(16);
    expect(v.signatureBase).toContain(
      '"@path": /github/repos/acme/widgets/issues\n"@query": ?state=open\n',
    );
    expect(added['signature-input']).toContain(
      ';tag="wimse-workload-to-workload";wimse-aud="https://nexus.example/github/repos/acme/widgets/issues"',
    );
    // Body tampering is caught by the digest step.
    expect(await code(verifyRequest({ ...verifier(headers), body: body + ' ' }))).toBe(
      'digest_mismatch',
    );
  });
  it('a GET without body has no content-digest', async () => {
    const { agent, lease } = await setup(alg);
    const added = await signRequest({
      method: 'GET',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    expect(added['content-digest']).toBeUndefined();
    expect(added['nexus-intent']).toBe('""');
    expect(await code(verifyRequest({ ...verifier(added), method: 'GET' }))).toBeUndefined();
  });
});

describe('interop: nexus/1 and nexus/1.1 signers against the nexus/1.1 verifier (issue 16)', () => {
  const sign = async (profile: 'nexus/1' | 'nexus/1.1', url = URL_) => {
    const { agent, lease } = await setup();
    return signRequest({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
      lease,
      key: agent.privateKey,
      intent: 'interop',
      now: () => NOW_MS,
      profile,
    });
  };
  const check = (headers: Record<string, string>, extra: Partial<VerifyRequestOptions> = {}) =>
    code(
      verifyRequest({
        ...verifier({ 'content-type': 'application/json', ...headers }, extra),
        body: '{"a":1}',
      }),
    );
  it.each(['nexus/1', 'nexus/1.1'] as const)('a %s signature verifies by default', async (p) => {
    const added = await sign(p);
    expect(await check(added)).toBeUndefined();
    const v = await verifyRequest({
      ...verifier({ 'content-type': 'application/json', ...added }),
      body: '{"a":1}',
    });
    expect(v.profile).toBe(p);
    expect(added['signature-input']).toContain(
      p === 'nexus/1' ? '"@request-target"' : '"@path" "@query"',
    );
  });
  it('a verifier that accepts nexus/1.1 only refuses a nexus/1 signature', async () => {
    expect(await check(await sign('nexus/1'), { profiles: ['nexus/1.1'] })).toBe(
      'signature_invalid',
    );
    expect(await check(await sign('nexus/1.1'), { profiles: ['nexus/1.1'] })).toBeUndefined();
  });
  it.each(['nexus/1', 'nexus/1.1'] as const)(
    '%s: every covered component mutated after signing is refused',
    async (p) => {
      const added = await sign(p);
      const mutations: Array<[string, Partial<VerifyRequestOptions>, Record<string, string>]> = [
        ['method', { method: 'PUT' }, {}],
        ['path', { url: URL_.replace('widgets', 'gadgets') }, {}],
        ['query changed', { url: URL_.replace('open', 'all') }, {}],
        ['query removed', { url: URL_.split('?')[0]! }, {}],
        ['query emptied', { url: URL_.split('?')[0]! + '?' }, {}],
        ['query added', { url: URL_ + '&x=1' }, {}],
        ['intent', {}, { 'nexus-intent': '"other"' }],
        ['content-type', {}, { 'content-type': 'text/plain' }],
      ];
      for (const [what, extra, headers] of mutations) {
        const got = await check({ ...added, ...headers }, extra);
        // A changed path also changes the wimse-aud the verifier expects: still refused.
        expect([what, got]).toEqual([what, 'signature_invalid']);
      }
    },
  );
  it('nexus/1.1: an empty query is "?", so /x and /x? sign the same (RFC 9421 §2.2.7)', async () => {
    const url = URL_.split('?')[0]!;
    const added = await sign('nexus/1.1', url);
    expect(await check(added, { url })).toBeUndefined();
    expect(await check(added, { url: `${url}?` })).toBeUndefined();
    const v1 = await sign('nexus/1', url);
    expect(await check(v1, { url: `${url}?` })).toBe('signature_invalid');
  });
  it('nexus/1.1 selects the signature by tag, not label; two tagged ones are refused', async () => {
    const added = await sign('nexus/1.1');
    const relabelled = {
      ...added,
      'signature-input': added['signature-input']!.replace(/^wimse=/, 'sig7='),
      signature: added.signature!.replace(/^wimse=/, 'sig7='),
    };
    expect(await check(relabelled)).toBeUndefined();
    const foreign = {
      'signature-input': `${added['signature-input']!.replace(/^wimse=/, 'gw=').replace('tag="wimse-workload-to-workload"', 'tag="gateway"')}, ${added['signature-input']}`,
      signature: `${added.signature!.replace(/^wimse=/, 'gw=')}, ${added.signature}`,
    };
    expect(await check({ ...added, ...foreign })).toBeUndefined();
    const twice = {
      'signature-input': `${added['signature-input']}, ${added['signature-input']!.replace(/^wimse=/, 'again=')}`,
      signature: `${added.signature}, ${added.signature!.replace(/^wimse=/, 'again=')}`,
    };
    expect(await check({ ...added, ...twice })).toBe('signature_invalid');
    // nexus/1 keeps its own rule: one member, labelled wimse.
    const v1 = await sign('nexus/1');
    expect(
      await check({
        ...v1,
        'signature-input': v1['signature-input']!.replace(/^wimse=/, 'sig7='),
        signature: v1.signature!.replace(/^wimse=/, 'sig7='),
      }),
    ).toBe('signature_invalid');
  });
});

describe('verification', () => {
  it('the order of checks: lease before signature before digest', async () => {
    const { agent, lease } = await setup('ed25519', {
      exp: NOW - 100,
      iat: NOW - 1000,
      nbf: NOW - 1000,
    });
    const added = await signRequest({
      method: 'POST',
      url: URL_,
      headers: { 'content-type': 'text/plain' },
      body: 'x',
      lease: (await setup()).lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    // Expired lease swapped in: the lease code wins over the signature failure.
    expect(
      await code(
        verifyRequest({
          ...verifier({ ...added, 'workload-identity-token': lease, 'content-type': 'text/plain' }),
          body: 'y',
        }),
      ),
    ).toBe('lease_expired');
    // Valid lease but another agent's key: signature_invalid before the digest mismatch.
    expect(
      await code(
        verifyRequest({ ...verifier({ ...added, 'content-type': 'text/plain' }), body: 'y' }),
      ),
    ).toBe('signature_invalid');
  });
  it('revocation hook', async () => {
    const { agent, lease } = await setup();
    const added = await signRequest({
      method: 'POST',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    expect(
      await code(
        verifyRequestSignature(
          verifier(added, { isRevoked: async (c) => c.jti === 'lease-id-0123456789abcdef' }),
        ),
      ),
    ).toBe('lease_revoked');
  });
  it('a repeated lease or intent field line is request_invalid (issue 16), an absent lease missing', async () => {
    const { agent, lease } = await setup();
    const added = await signRequest({
      method: 'POST',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    const { 'workload-identity-token': _l, ...rest } = added;
    expect(await code(verifyRequestSignature(verifier(rest)))).toBe('lease_missing');
    const dup = Object.entries(added).concat([['workload-identity-token', lease]]) as Array<
      [string, string]
    >;
    expect(await code(verifyRequestSignature({ ...verifier({}), headers: dup }))).toBe(
      'request_invalid',
    );
    const dupIntent = Object.entries(added).concat([['nexus-intent', '"x"']]) as Array<
      [string, string]
    >;
    expect(await code(verifyRequestSignature({ ...verifier({}), headers: dupIntent }))).toBe(
      'request_invalid',
    );
  });
  it('the wimse-aud is bound to the verifier URL', async () => {
    const { agent, lease } = await setup();
    const added = await signRequest({
      method: 'POST',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    expect(
      await code(
        verifyRequestSignature(
          verifier(added, {
            url: 'https://other.example/github/repos/acme/widgets/issues?state=open',
          }),
        ),
      ),
    ).toBe('signature_invalid');
  });
  it('skews: signature 5 s, lease 30 s, both configurable', async () => {
    const { agent, lease } = await setup();
    const added = await signRequest({
      method: 'POST',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
      ttlSeconds: 10,
    });
    expect(
      await code(verifyRequestSignature(verifier(added, { now: () => NOW_MS + 15_000 }))),
    ).toBeUndefined();
    expect(
      await code(verifyRequestSignature(verifier(added, { now: () => NOW_MS + 16_000 }))),
    ).toBe('signature_expired');
    expect(
      await code(
        verifyRequestSignature(verifier(added, { now: () => NOW_MS + 20_000, skewSeconds: 10 })),
      ),
    ).toBeUndefined();
    expect(await code(verifyRequestSignature(verifier(added, { now: () => NOW_MS - 6_000 })))).toBe(
      'signature_invalid',
    );
  });
  it('verifyRequestBody: empty body with a digest must still match', async () => {
    expect(
      await code(verifyRequestBody({ covered: [] }, { 'content-digest': 'sha-256=:AAAA:' }, '')),
    ).toBe('digest_mismatch');
    expect(await code(verifyRequestBody({ covered: [] }, {}, 'x'))).toBe('digest_missing');
    expect(
      await code(
        verifyRequestBody(
          { covered: ['content-digest'] },
          { 'content-digest': 'sha-256=:AAAA:' },
          'x',
        ),
      ),
    ).toBe('signature_invalid');
  });
});

describe('signRequest refusals', () => {
  it.each<[string, Record<string, unknown>, string]>([
    ['ttl > 60', { ttlSeconds: 61 }, 'request_invalid'],
    ['ttl 0', { ttlSeconds: 0 }, 'request_invalid'],
    ['short nonce', { nonce: 'abc' }, 'request_invalid'],
    ['intent non-ASCII', { intent: 'café' }, 'intent_invalid'],
    ['intent too long', { intent: 'x'.repeat(513) }, 'intent_invalid'],
    ['body without content-type', { body: 'x' }, 'request_invalid'],
    ['relative url', { url: '/github/x' }, 'request_invalid'],
    ['lease not a JWT', { lease: 'nope' }, 'lease_invalid'],
  ])('%s', async (_n, o, expected) => {
    const { agent, lease } = await setup();
    expect(
      await code(
        signRequest({
          method: 'GET',
          url: URL_,
          lease,
          key: agent.privateKey,
          now: () => NOW_MS,
          ...o,
        }),
      ),
    ).toBe(expected);
  });
  it('caps expires at the lease exp, and refuses an expired lease', async () => {
    const { agent, lease } = await setup('ed25519', { exp: NOW + 10 });
    const added = await signRequest({
      method: 'GET',
      url: URL_,
      lease,
      key: agent.privateKey,
      now: () => NOW_MS,
    });
    expect(added['signature-input']).toContain(`expires=${NOW + 10}`);
    expect(
      await code(
        signRequest({
          method: 'GET',
          url: URL_,
          lease,
          key: agent.privateKey,
          now: () => NOW_MS + 11_000,
        }),
      ),
    ).toBe('lease_expired');
  });
  it('refuses an RSA key', async () => {
    const { lease } = await setup();
    const rsa = (await globalThis.crypto.subtle.generateKey(
      {
        name: 'RSA-PSS',
        hash: 'SHA-256',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
      },
      false,
      ['sign'],
    )) as unknown as { privateKey: never };
    expect(await code(signRequest({ method: 'GET', url: URL_, lease, key: rsa.privateKey }))).toBe(
      'request_invalid',
    );
  });
});

describe('keys', () => {
  it('generateAgentKey is non-extractable by default', async () => {
    const k = await generateAgentKey();
    expect(k.privateKey.extractable).toBe(false);
    expect(k.publicJwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' });
    expect(k.publicJwk).not.toHaveProperty('d');
    expect(
      (await generateAgentKey('ecdsa-p256', { extractable: true })).privateKey.extractable,
    ).toBe(true);
  });
  it('jwkThumbprint matches RFC 8037 Appendix A.3', async () => {
    expect(
      await jwkThumbprint({
        kty: 'OKP',
        crv: 'Ed25519',
        x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo',
      }),
    ).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  });
});

function canonicalUrl(url: string): string | undefined {
  try {
    return new URL(url).href;
  } catch {
    return undefined;
  }
}

describe('properties of the profile verifier', async () => {
  const { agent, lease } = await setup();
  const body = '{"a":1}';
  const base = { 'content-type': 'application/json' };
  const added = await signRequest({
    method: 'POST',
    url: URL_,
    headers: base,
    body,
    lease,
    key: agent.privateKey,
    intent: 'prop',
    now: () => NOW_MS,
    nonce: 'fixed-nonce-0123456789',
  });
  const headers: Record<string, string> = { ...base, ...added };
  const outcome = (h: Record<string, string>, o: Partial<VerifyRequestOptions> = {}) =>
    code(verifyRequest({ ...verifier(h), body, ...o }));

  it('the unmodified request verifies', async () => {
    expect(await outcome(headers)).toBeUndefined();
  });
  it('any change to a covered header, a parameter or the target never verifies', async () => {
    const covered = [
      'nexus-intent',
      'content-type',
      'content-digest',
      'signature-input',
      'signature',
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...covered, 'url', 'method'),
        fc.nat(),
        fc.integer({ min: 32, max: 126 }),
        async (what, pos, ch) => {
          const h = { ...headers };
          let url = URL_;
          let method = 'POST';
          const replaceAt = (s: string) => {
            const i = pos % s.length;
            const c = String.fromCharCode(ch === s.charCodeAt(i) ? (ch === 126 ? 32 : ch + 1) : ch);
            return s.slice(0, i) + c + s.slice(i + 1);
          };
          if (what === 'url') {
            url = replaceAt(URL_);
            // Scheme and host are case-insensitive: `https://Nexus.example` is the same
            // target, and verifying it is correct, not a forgery.
            fc.pre(canonicalUrl(url) !== canonicalUrl(URL_));
          } else if (what === 'method') method = 'PUT';
          else h[what] = replaceAt(h[what]!);
          const result = await outcome(h, { url, method });
          return result !== undefined && !result.startsWith('foreign');
        },
      ),
      { numRuns: 300 },
    );
  });
  it('arbitrary Signature-Input / Signature values are refused with a NexusError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 80 }),
        fc.string({ maxLength: 80 }),
        async (si, sig) => {
          const result = await outcome({ ...headers, 'signature-input': si, signature: sig });
          return result !== undefined && !result.startsWith('foreign');
        },
      ),
      { numRuns: 300 },
    );
  });
});
