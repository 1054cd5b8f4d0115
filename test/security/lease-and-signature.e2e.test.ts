/**
 * Issue 6, lease and signature attacks: forged, confused, expired, revoked and borrowed
 * leases; replays (same process, concurrent, malleated, after a clean restart and after a
 * crash); omitted components, label confusion, digest downgrade, odd windows and every
 * kind of tampering after signing. Each asserts the exact code and that nothing reached
 * the upstream. Crafted leases with the real Authority key come from an insider test
 * instrument (`authorityMinter`), so each test breaks exactly one rule.
 */
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, UnsecuredJWT, exportJWK, base64url } from 'jose';
import { createContentDigest } from '@nexus-proxy/protocol';
import { startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import {
  attack,
  authorityMinter,
  enrollAttacker,
  leaks,
  everything,
  leaseClaims,
  restartAndWait,
  send,
  signCustom,
  signFor,
  type Attacker,
  type Minter,
  type Received,
} from './harness.js';

const TOKEN = 'nxs_lease-sig-Bearer-Token-0123456789abcdef';
const P256_N = BigInt('0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551');

describe('lease and signature attacks', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let mallory: Attacker;
  let victim: Attacker;
  let ecdsa: Attacker;
  let minter: Minter;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
      },
      agents: {
        mallory: { roles: ['reader'] },
        victim: { roles: ['reader', 'writer'] },
        ecdsa: { roles: ['reader'] },
        disabled: { roles: ['reader'] },
      },
      policies: [
        { id: 'read', allow: { roles: ['reader'], services: ['echo'], methods: ['GET', 'POST'] } },
        { id: 'write', allow: { roles: ['writer'], services: ['echo'], methods: ['DELETE'] } },
      ],
    });
    await node.setCredential('echo-token', { value: TOKEN });
    mallory = await enrollAttacker(node, 'mallory');
    victim = await enrollAttacker(node, 'victim');
    ecdsa = await enrollAttacker(node, 'ecdsa', 'ecdsa-p256');
    minter = await authorityMinter(node);
  });

  afterAll(async () => {
    await minter?.close();
    await node?.stop();
    await upstream?.close();
  });

  /** Sends, then asserts status + code and that nothing was forwarded or leaked. */
  async function refused(
    p: Promise<Received> | (() => Promise<Received>),
    status: number,
    code: string,
  ): Promise<Received> {
    upstream.reset();
    const r = await (typeof p === 'function' ? p() : p);
    expect({ status: r.status, code: r.code }).toEqual({ status, code });
    expect(upstream.requests).toHaveLength(0);
    expect(leaks(everything(r), [TOKEN])).toEqual([]);
    return r;
  }

  /** A request signed by mallory's key but carrying `lease`. */
  async function withLease(lease: string, target = '/echo/x'): Promise<Received> {
    const headers = await signFor(node, mallory, target, { lease });
    return send(node.proxyUrl, target, { headers });
  }

  // --- leases -------------------------------------------------------------------------

  it('no lease: lease_missing', async () => {
    const headers = await signFor(node, mallory, '/echo/x');
    delete headers['workload-identity-token'];
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'lease_missing');
  });

  it('the lease in Authorization instead of Workload-Identity-Token: lease_missing', async () => {
    const headers = await signFor(node, mallory, '/echo/x');
    headers.authorization = `Bearer ${headers['workload-identity-token']}`;
    delete headers['workload-identity-token'];
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'lease_missing');
  });

  it('alg none: lease_invalid', async () => {
    const unsecured = new UnsecuredJWT(leaseClaims(node, mallory, { scope: 'reader writer' }))
      .encode()
      .replace(
        /^[^.]+/,
        base64url.encode(JSON.stringify({ alg: 'none', typ: 'wit+jwt', kid: minter.kid })),
      );
    await refused(withLease(unsecured), 401, 'lease_invalid');
  });

  it('HS256 keyed with the Authority public key (raw x, JWK text, PEM): lease_invalid', async () => {
    const jwks = (await (await fetch(`${node.proxyUrl}/.well-known/jwks.json`)).json()) as {
      keys: { kid: string; x: string }[];
    };
    const pub = jwks.keys.find((k) => k.kid === minter.kid)!;
    const pem = createPublicKey({ key: pub as never, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    for (const secret of [
      Buffer.from(pub.x, 'base64url'),
      Buffer.from(JSON.stringify(pub)),
      Buffer.from(pem),
    ]) {
      const forged = await new SignJWT(leaseClaims(node, mallory, { scope: 'reader writer' }))
        .setProtectedHeader({ alg: 'HS256', typ: 'wit+jwt', kid: minter.kid })
        .sign(secret);
      await refused(withLease(forged), 401, 'lease_invalid');
    }
  });

  it('a lease signed by another Authority (unknown kid, or the real kid): lease_invalid', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    for (const kid of ['00112233aabbccdd', minter.kid]) {
      const forged = await new SignJWT(leaseClaims(node, mallory))
        .setProtectedHeader({ alg: 'EdDSA', typ: 'wit+jwt', kid })
        .sign(privateKey);
      await refused(withLease(forged), 401, 'lease_invalid');
    }
  });

  it('a self-signed lease carrying its key (jwk, jku, x5u headers): lease_invalid', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const jwk = await exportJWK(publicKey);
    const forged = await new SignJWT(leaseClaims(node, mallory))
      .setProtectedHeader({
        alg: 'EdDSA',
        typ: 'wit+jwt',
        jwk,
        jku: `${upstream.url}/jwks.json`,
        x5u: `${upstream.url}/cert.pem`,
      } as never)
      .sign(privateKey);
    await refused(withLease(forged), 401, 'lease_invalid');
  });

  for (const [what, over, header, code] of [
    ['typ JWT', {}, { typ: 'JWT' }, 'lease_invalid'],
    ['a foreign issuer', { iss: 'https://evil.example' }, {}, 'lease_invalid'],
    ['another audience', { aud: 'https://other-proxy.example' }, {}, 'lease_invalid'],
    [
      'an expired exp',
      {
        exp: Math.floor(Date.now() / 1000) - 120,
        iat: Math.floor(Date.now() / 1000) - 900,
        nbf: Math.floor(Date.now() / 1000) - 900,
      },
      {},
      'lease_expired',
    ],
    [
      'nbf in the future',
      { nbf: Math.floor(Date.now() / 1000) + 600, exp: Math.floor(Date.now() / 1000) + 900 },
      {},
      'lease_not_yet_valid',
    ],
    ['a private key in cnf', { cnf: 'private' }, {}, 'lease_invalid'],
    ['an unknown agent', { sub: 'nexus://nexus.local/agent/ghost' }, {}, 'lease_invalid'],
    ['a short jti', { jti: 'abc' }, {}, 'lease_invalid'],
  ] as const) {
    it(`a lease with ${what}: ${code}`, async () => {
      const claims: Record<string, unknown> = leaseClaims(
        node,
        mallory,
        over as Record<string, unknown>,
      );
      if (claims.cnf === 'private') {
        const jwk = await globalThis.crypto.subtle.exportKey('jwk', mallory.key.privateKey);
        claims.cnf = { jwk: { ...mallory.key.publicJwk, d: jwk.d } };
      }
      const lease = await minter.mint(claims, header);
      // signCustom: the SDK signer itself refuses to sign with an expired lease.
      const headers = await signCustom(node, { ...mallory, lease }, '/echo/x');
      await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, code);
    });
  }

  it('a tampered lease payload (scope escalated): lease_invalid', async () => {
    const [h, p, s] = mallory.lease.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    claims.scope = 'reader writer';
    const tampered = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
    await refused(withLease(tampered), 401, 'lease_invalid');
  });

  it("another agent's lease with one's own key: signature_invalid", async () => {
    await refused(withLease(victim.lease, '/echo/x'), 401, 'signature_invalid');
    // The victim's role would allow DELETE; borrowing its lease does not.
    const headers = await signFor(node, mallory, '/echo/x', {
      lease: victim.lease,
      method: 'DELETE',
    });
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'DELETE', headers }),
      401,
      'signature_invalid',
    );
  });

  it('renewal with a borrowed lease: signature_invalid, and no lease is issued', async () => {
    const headers = await signFor(node, mallory, '/v1/leases/renew', {
      method: 'POST',
      lease: victim.lease,
    });
    const r = await refused(
      send(node.proxyUrl, '/v1/leases/renew', { method: 'POST', headers }),
      401,
      'signature_invalid',
    );
    expect(r.body.toString()).not.toContain('"lease"');
  });

  // --- signature parameters and coverage ---------------------------------------------

  it('no Signature field: signature_missing', async () => {
    const headers = await signFor(node, mallory, '/echo/x');
    delete headers.signature;
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_missing');
  });

  for (const omitted of ['@method', '@request-target', 'workload-identity-token', 'nexus-intent']) {
    it(`omitting ${omitted} from the covered components: signature_invalid`, async () => {
      const components = [
        '@method',
        '@request-target',
        'workload-identity-token',
        'nexus-intent',
      ].filter((c) => c !== omitted);
      const headers = await signCustom(node, mallory, '/echo/x', { components });
      await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');
    });
  }

  it('a body whose digest and type are not covered: signature_invalid', async () => {
    const body = '{"a":1}';
    const digest = await createContentDigest(Buffer.from(body));
    const headers = await signCustom(node, mallory, '/echo/x', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-digest': digest },
    });
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body }),
      401,
      'signature_invalid',
    );
  });

  it('a component with parameters does not count as covered: signature_invalid', async () => {
    const headers = await signCustom(node, mallory, '/echo/x', {
      components: [
        '@method',
        '@request-target',
        'workload-identity-token',
        { name: 'nexus-intent', params: { sf: true } },
      ],
    });
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');
  });

  it('label confusion (sig1, two members, mismatched labels): signature_invalid', async () => {
    const sig1 = await signCustom(node, mallory, '/echo/x', { label: 'sig1' });
    await refused(send(node.proxyUrl, '/echo/x', { headers: sig1 }), 401, 'signature_invalid');

    const good = await signCustom(node, mallory, '/echo/x');
    const other = await signCustom(node, mallory, '/echo/x', { label: 'sig1' });
    const two = {
      ...good,
      'signature-input': `${good['signature-input']}, ${other['signature-input']}`,
      signature: `${good.signature}, ${other.signature}`,
    };
    await refused(send(node.proxyUrl, '/echo/x', { headers: two }), 401, 'signature_invalid');

    const mixed = { ...good, signature: good.signature!.replace(/^wimse=/, 'sig1=') };
    await refused(send(node.proxyUrl, '/echo/x', { headers: mixed }), 401, 'signature_invalid');
  });

  for (const [what, params, omit] of [
    ['a keyid parameter', { keyid: 'attacker' }, []],
    ['an alg parameter', { alg: 'hmac-sha256' }, []],
    ['another tag', { tag: 'wimse-other' }, []],
    ['no nonce', {}, ['nonce']],
    ['a 15-character nonce', { nonce: 'abcdefghijklmno' }, []],
    ['no wimse-aud', {}, ['wimse-aud']],
    ['a wimse-aud for another proxy', { 'wimse-aud': 'https://other.example/echo/x' }, []],
    [
      'created a minute in the future',
      { created: Math.floor(Date.now() / 1000) + 60, expires: Math.floor(Date.now() / 1000) + 90 },
      [],
    ],
    ['a one-hour window', { expires: Math.floor(Date.now() / 1000) + 3600 }, []],
    ['expires before created', { expires: Math.floor(Date.now() / 1000) - 1 }, []],
  ] as const) {
    it(`a signature with ${what}: signature_invalid`, async () => {
      const headers = await signCustom(node, mallory, '/echo/x', {
        params: { ...params },
        omit: [...omit],
      });
      await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');
    });
  }

  it('created long ago: signature_expired', async () => {
    const past = Math.floor(Date.now() / 1000) - 3600;
    const headers = await signCustom(node, mallory, '/echo/x', {
      params: { created: past, expires: past + 30 },
    });
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_expired');
  });

  it('a signature outliving its lease: signature_invalid', async () => {
    const now = Math.floor(Date.now() / 1000);
    const lease = await minter.mint(leaseClaims(node, mallory, { exp: now + 20 }));
    const headers = await signCustom(node, { ...mallory, lease }, '/echo/x', {
      params: { expires: now + 50 },
    });
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');
  });

  // --- tampering after signing --------------------------------------------------------

  it('method swapped after signing: signature_invalid', async () => {
    const headers = await signFor(node, mallory, '/echo/x');
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'DELETE', headers }),
      401,
      'signature_invalid',
    );
  });

  it('path swapped after signing: signature_invalid', async () => {
    const headers = await signFor(node, mallory, '/echo/allowed');
    await refused(send(node.proxyUrl, '/echo/other', { headers }), 401, 'signature_invalid');
  });

  it('query swapped after signing: signature_invalid', async () => {
    const headers = await signFor(node, mallory, '/echo/x?limit=1');
    await refused(
      send(node.proxyUrl, '/echo/x?limit=1000000', { headers }),
      401,
      'signature_invalid',
    );
  });

  it('intent swapped after signing: signature_invalid', async () => {
    const headers = await signFor(node, mallory, '/echo/x', { intent: 'read one issue' });
    headers['nexus-intent'] = '"delete everything"';
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');
  });

  it('Content-Type swapped after signing: signature_invalid', async () => {
    const body = '{"a":1}';
    const headers = await signFor(node, mallory, '/echo/x', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    headers['content-type'] = 'application/x-www-form-urlencoded';
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body }),
      401,
      'signature_invalid',
    );
  });

  it('body swapped after signing: digest_mismatch', async () => {
    const headers = await signFor(node, mallory, '/echo/x', {
      method: 'POST',
      body: '{"amount":1}',
    });
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body: '{"amount":1000}' }),
      400,
      'digest_mismatch',
    );
  });

  it('a large body (hashed off the main thread, issue 14) swapped after signing: digest_mismatch; the signed one goes on byte for byte', async () => {
    // Over 64 KiB: the digest goes to WebCrypto as a view of the request's buffer.
    const body = Buffer.alloc(512 * 1024, 'a');
    const headers = await signFor(node, mallory, '/echo/large', { method: 'POST', body });
    const swapped = Buffer.from(body);
    swapped[swapped.length - 1] = 0x62;
    await refused(
      send(node.proxyUrl, '/echo/large', { method: 'POST', headers, body: swapped }),
      400,
      'digest_mismatch',
    );
    upstream.reset();
    const fresh = await signFor(node, mallory, '/echo/large', { method: 'POST', body });
    const ok = await send(node.proxyUrl, '/echo/large', { method: 'POST', headers: fresh, body });
    expect(ok.status).toBe(200);
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]!.body.equals(body)).toBe(true);
  });

  it('a body added to a bodiless signed request: digest_missing', async () => {
    const headers = await signFor(node, mallory, '/echo/x', { method: 'POST' });
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body: 'smuggled' }),
      400,
      'digest_missing',
    );
  });

  it('digest downgrade to md5 or sha (signed): digest_invalid', async () => {
    const body = 'payload';
    for (const digest of [
      'md5=:F3q9RO3tPscTbkcd8x3KvQ==:',
      'sha=:Ap4r0k0Z6TAd/AwW4rbRMaaaVg0=:',
      'sha-256=abc',
    ]) {
      const headers = await signCustom(node, mallory, '/echo/x', {
        method: 'POST',
        headers: { 'content-type': 'text/plain', 'content-digest': digest },
        components: [
          '@method',
          '@request-target',
          'workload-identity-token',
          'nexus-intent',
          'content-type',
          'content-digest',
        ],
      });
      await refused(
        send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body }),
        400,
        'digest_invalid',
      );
    }
  });

  it('a right sha-512 beside a wrong sha-256: digest_mismatch', async () => {
    const body = 'payload';
    const good512 = await createContentDigest(Buffer.from(body), 'sha-512');
    const wrong256 = await createContentDigest(Buffer.from('other'), 'sha-256');
    const headers = await signCustom(node, mallory, '/echo/x', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'content-digest': `${wrong256}, ${good512}` },
      components: [
        '@method',
        '@request-target',
        'workload-identity-token',
        'nexus-intent',
        'content-type',
        'content-digest',
      ],
    });
    await refused(
      send(node.proxyUrl, '/echo/x', { method: 'POST', headers, body }),
      400,
      'digest_mismatch',
    );
  });

  it('flipped signature bits and a DER-encoded ECDSA signature: signature_invalid', async () => {
    const headers = await signFor(node, mallory, '/echo/x');
    const bytes = Buffer.from(/:(.*):/.exec(headers.signature!)![1]!, 'base64');
    bytes[10] = bytes[10]! ^ 0x01;
    headers.signature = `wimse=:${bytes.toString('base64')}:`;
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 401, 'signature_invalid');

    const ec = await signFor(node, ecdsa, '/echo/x');
    const rs = Buffer.from(/:(.*):/.exec(ec.signature!)![1]!, 'base64');
    const int = (b: Buffer) => (b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
    const r = int(rs.subarray(0, 32));
    const s = int(rs.subarray(32));
    const der = Buffer.concat([
      Buffer.from([0x30, r.length + s.length + 4, 0x02, r.length]),
      r,
      Buffer.from([0x02, s.length]),
      s,
    ]);
    ec.signature = `wimse=:${der.toString('base64')}:`;
    await refused(send(node.proxyUrl, '/echo/x', { headers: ec }), 401, 'signature_invalid');
  });

  // --- policy and agent state ---------------------------------------------------------

  it('a method policy does not allow: policy_denied, audited', async () => {
    const r = await refused(
      () => attack(node, mallory, '/echo/x', { method: 'DELETE' }),
      403,
      'policy_denied',
    );
    const requestId = r.headers['nexus-request-id'] as string;
    const audit = await node.admin<{ records: { decision: string; error_code?: string }[] }>(
      'GET',
      `/v1/audit?request_id=${requestId}`,
    );
    expect(audit.body.records.map((x) => [x.decision, x.error_code])).toEqual([
      ['deny', 'policy_denied'],
    ]);
  });

  it('a disabled agent: its live lease is revoked, a later one is refused (agent_disabled)', async () => {
    const d = await enrollAttacker(node, 'disabled');
    expect((await attack(node, d, '/echo/x')).status).toBe(200);
    expect((await node.admin('POST', '/v1/agents/disabled/disable')).status).toBe(200);
    await refused(() => attack(node, d, '/echo/x'), 401, 'lease_revoked');
    // A lease issued after the disable (iat past the revocation second) still cannot act.
    const later = Math.floor(Date.now() / 1000) + 2;
    const lease = await minter.mint(leaseClaims(node, d, { iat: later, nbf: later - 2 }));
    const headers = await signCustom(node, { ...d, lease }, '/echo/x');
    await refused(send(node.proxyUrl, '/echo/x', { headers }), 403, 'agent_disabled');
    // Enrollment is closed too.
    expect((await node.admin('POST', '/v1/agents/disabled/enrollment-tokens', {})).status).not.toBe(
      201,
    );
  });

  it('a revoked lease: lease_revoked, for requests and for renewal', async () => {
    const a = await enrollAttacker(node, 'mallory');
    expect((await attack(node, a, '/echo/x')).status).toBe(200);
    expect((await node.admin('POST', `/v1/leases/${a.claims.jti}/revoke`)).status).toBe(200);
    await refused(() => attack(node, a, '/echo/x'), 401, 'lease_revoked');
    const headers = await signFor(node, a, '/v1/leases/renew', { method: 'POST' });
    await refused(
      send(node.proxyUrl, '/v1/leases/renew', { method: 'POST', headers }),
      401,
      'lease_revoked',
    );
  });

  // --- replay -------------------------------------------------------------------------

  it('an identical copy: replay_detected, the upstream saw one', async () => {
    upstream.reset();
    const headers = await signFor(node, mallory, '/echo/once');
    expect((await send(node.proxyUrl, '/echo/once', { headers })).status).toBe(200);
    const again = await send(node.proxyUrl, '/echo/once', { headers });
    expect([again.status, again.code]).toEqual([401, 'replay_detected']);
    expect(upstream.requests).toHaveLength(1);
  });

  it('twenty concurrent copies: exactly one goes through', async () => {
    upstream.reset();
    const headers = await signFor(node, mallory, '/echo/race');
    const all = await Promise.all(
      Array.from({ length: 20 }, () => send(node.proxyUrl, '/echo/race', { headers })),
    );
    expect(all.filter((r) => r.status === 200)).toHaveLength(1);
    expect(all.filter((r) => r.code === 'replay_detected')).toHaveLength(19);
    expect(upstream.requests).toHaveLength(1);
  });

  it('a malleated ECDSA signature (s -> n - s) is still a replay', async () => {
    upstream.reset();
    const headers = await signFor(node, ecdsa, '/echo/malleable');
    expect((await send(node.proxyUrl, '/echo/malleable', { headers })).status).toBe(200);
    const rs = Buffer.from(/:(.*):/.exec(headers.signature!)![1]!, 'base64');
    const s = BigInt(`0x${rs.subarray(32).toString('hex')}`);
    const flipped = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
    const copy = {
      ...headers,
      signature: `wimse=:${Buffer.concat([rs.subarray(0, 32), flipped]).toString('base64')}:`,
    };
    const r = await send(node.proxyUrl, '/echo/malleable', { headers: copy });
    expect([r.status, r.code]).toEqual([401, 'replay_detected']);
    expect(upstream.requests).toHaveLength(1);
  });

  it('a copy replayed after a clean restart: replay_detected', async () => {
    upstream.reset();
    const headers = await signFor(node, mallory, '/echo/restart', { ttlSeconds: 60 });
    expect((await send(node.proxyUrl, '/echo/restart', { headers })).status).toBe(200);
    await restartAndWait(node);
    const r = await send(node.proxyUrl, '/echo/restart', { headers });
    expect([r.status, r.code]).toEqual([401, 'replay_detected']);
    expect(upstream.requests).toHaveLength(1);
  });

  it('a copy replayed after a crash (no replay snapshot): signature_expired', async () => {
    upstream.reset();
    const headers = await signFor(node, mallory, '/echo/crash', { ttlSeconds: 60 });
    expect((await send(node.proxyUrl, '/echo/crash', { headers })).status).toBe(200);
    await restartAndWait(node, true);
    const r = await send(node.proxyUrl, '/echo/crash', { headers });
    expect([r.status, r.code]).toEqual([401, 'signature_expired']);
    expect(upstream.requests).toHaveLength(1);
  });

  it('the debug log of the whole file holds no secret or key', () => {
    const log = node.output();
    expect(leaks(log, [TOKEN])).toEqual([]);
    expect(log).not.toContain(node.operatorToken);
    for (const a of [mallory, victim, ecdsa]) expect(log).not.toContain(a.privateD);
  });
});
