/**
 * HMAC mechanic: presets and custom options with fixed inputs; expected signatures were
 * computed independently (Python's hmac module) and are pinned here as literals, and
 * recomputed in-test from the documented scheme with node:crypto.
 */
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createHmacMechanic, hmacMechanic, hmacOptionsSchema, type HmacOptions } from './hmac.js';
import { HMAC_PRESETS } from './hmac-presets.js';
import type { ResolvedCredential } from './mechanic.js';
import { fakeContext, outbound } from './test/fake-context.js';

const NOW = Date.parse('2024-01-02T03:04:05.678Z');
const T = '1704164645';
const BODY = '{"id":"evt_1","object":"event"}';

const cred = (fields: Record<string, string>): ResolvedCredential => ({
  name: 'signing',
  version: 7,
  fields,
});
const parse = (options: Record<string, unknown>): HmacOptions =>
  hmacOptionsSchema.parse({ credential: 'signing', ...options });

describe('hmac presets', () => {
  it('stripe-webhook: t=<unix>,v1=hex(HMAC-SHA256("<t>.<body>"))', async () => {
    const req = outbound('POST', 'https://receiver.example/hooks', { body: BODY });
    const m = hmacMechanic.create('hooks', parse({ preset: 'stripe-webhook' }), {
      clock: () => NOW,
    });
    const result = await m.apply(
      req,
      fakeContext(cred({ secret: 'whsec_test_secret' }), { now: NOW }),
    );
    const independent = createHmac('sha256', 'whsec_test_secret')
      .update(`${T}.${BODY}`)
      .digest('hex');
    expect(independent).toBe('e805918b18522b82da7a2e614e3c611c1757501f12934e054958e235ee4de1d2');
    expect(req.headers['stripe-signature']).toBe(`t=${T},v1=${independent}`);
    expect(m.injectedHeaders).toEqual(['stripe-signature']);
    expect(result).toEqual({
      credential: { name: 'signing', version: 7 },
      // The signing key never travels (issue 10): nothing of this request is secret upstream.
      secrets: [],
    });
  });

  it('github-webhook: sha256=hex(HMAC-SHA256(body))', async () => {
    const req = outbound('POST', 'https://receiver.example/gh', { body: BODY });
    await hmacMechanic
      .create('gh', parse({ preset: 'github-webhook' }), { clock: () => NOW })
      .apply(req, fakeContext(cred({ secret: 'gh-secret' }), { now: NOW }));
    expect(req.headers['x-hub-signature-256']).toBe(
      'sha256=40b930feeba8a6903f6bc7d85ab32f542123eb7b3e4ee721b802092318c16b12',
    );
  });

  it('coinbase-exchange: base64 key, timestamp+METHOD+path?query+body, base64 signature', async () => {
    const req = outbound('post', 'https://api.exchange.coinbase.com/orders?product_id=BTC-USD', {
      body: '{"size":"0.01"}',
    });
    const fields = {
      secret: 'c2VjcmV0LWtleS1ieXRlcw==',
      key_id: 'cb-key-1',
      passphrase: 'cb-pass',
    };
    const m = hmacMechanic.create('cb', parse({ preset: 'coinbase-exchange' }), {
      clock: () => NOW,
    });
    const result = await m.apply(req, fakeContext(cred(fields), { now: NOW }));
    expect(req.headers).toMatchObject({
      'cb-access-sign': 'ivZpx88i9870e2hTRY+HX7WzvdF1d7AS1j0+I2dlmkc=',
      'cb-access-timestamp': T,
      'cb-access-key': 'cb-key-1',
      'cb-access-passphrase': 'cb-pass',
    });
    expect([...m.injectedHeaders].sort()).toEqual([
      'cb-access-key',
      'cb-access-passphrase',
      'cb-access-sign',
      'cb-access-timestamp',
    ]);
    // Everything but the signing key travels (issue 10).
    expect([...result.secrets].sort()).toEqual(
      Object.entries(fields)
        .filter(([k]) => k !== 'secret')
        .map(([, v]) => v)
        .sort(),
    );
  });

  it('coinbase-v2: hex signature over timestamp+GET+path, no body', async () => {
    const req = outbound('GET', 'https://api.coinbase.com/v2/accounts');
    await hmacMechanic
      .create('cb2', parse({ preset: 'coinbase-v2' }), { clock: () => NOW })
      .apply(req, fakeContext(cred({ secret: 'v2-secret', key_id: 'k2' }), { now: NOW }));
    expect(req.headers['cb-access-sign']).toBe(
      '419a8680ad1b5897a996ccf4d19c360539b00433d3a8128b88db75c1d04f136e',
    );
  });

  it('an option overrides the preset', () => {
    const options = parse({
      preset: 'stripe-webhook',
      signature_header: 'X-Signature',
      encoding: 'base64',
    });
    expect(options.signature_header).toBe('x-signature');
    expect(options.encoding).toBe('base64');
    expect(options.string_to_sign).toBe(HMAC_PRESETS['stripe-webhook'].string_to_sign);
  });
});

describe('hmac custom options', () => {
  it('sha512, lines joined with \\n, iso timestamp, nonce and key id, base64', async () => {
    const options = parse({
      algorithm: 'sha512',
      string_to_sign: [
        '{{method}}',
        '{{path}}',
        '{{query}}',
        '{{timestamp}}',
        '{{body_sha256_hex}}',
        '{{nonce}}',
        '{{key_id}}',
      ],
      signature_header: 'x-sig',
      signature_template: 'keyId={{key_id}},sig={{signature}}',
      timestamp_header: 'x-ts',
      timestamp_format: 'iso',
      nonce_header: 'x-nonce',
      encoding: 'base64',
    });
    const req = outbound('POST', 'https://api.example/api/v1/items?b=2&a=1', { body: BODY });
    const m = createHmacMechanic(options, { nonce: () => 'nonce-fixed' });
    const result = await m.apply(
      req,
      fakeContext(cred({ secret: 'custom-secret', key_id: 'kid-1' }), { now: NOW }),
    );
    const sts = [
      'POST',
      '/api/v1/items',
      'b=2&a=1',
      '2024-01-02T03:04:05.678Z',
      createHash('sha256').update(BODY).digest('hex'),
      'nonce-fixed',
      'kid-1',
    ].join('\n');
    const independent = createHmac('sha512', 'custom-secret').update(sts).digest('base64');
    expect(independent).toBe(
      'P5NGwhi3JR+OBor3Le8HUd90/MaQIXYifWlZ48S9UMNMpZI+RI3mqsno8w6LeSj7rRmZYTx3XtQjwlKUo13vOQ==',
    );
    expect(req.headers).toMatchObject({
      'x-sig': `keyId=kid-1,sig=${independent}`,
      'x-ts': '2024-01-02T03:04:05.678Z',
      'x-nonce': 'nonce-fixed',
    });
    expect([...result.secrets].sort()).toEqual(['kid-1']);
  });

  it('sha1 with unix_ms and the base64 body hash', async () => {
    const options = parse({
      algorithm: 'sha1',
      string_to_sign: '{{timestamp}}:{{body_sha256_base64}}',
      signature_header: 'x-sig',
      timestamp_format: 'unix_ms',
    });
    const req = outbound('GET', 'https://api.example/');
    await createHmacMechanic(options).apply(req, fakeContext(cred({ secret: 's1' }), { now: NOW }));
    expect(req.headers['x-sig']).toBe('03c2ff45700fe8219f3cff8fb63a9adb933e5b15');
  });

  it('signs raw body bytes, not a decoded string', async () => {
    const req = outbound('POST', 'https://receiver.example/gh', {
      body: new Uint8Array([0xff, 0xfe, 0x00, 0x41]),
    });
    await createHmacMechanic(parse({ preset: 'github-webhook' })).apply(
      req,
      fakeContext(cred({ secret: 'gh-secret' }), { now: NOW }),
    );
    expect(req.headers['x-hub-signature-256']).toBe(
      'sha256=11b42b3e1a75f05f425ddaa94109a6243069e3e21381008bda5363a6c146a7b1',
    );
  });

  it('uses a fresh random nonce by default', async () => {
    const options = parse({
      algorithm: 'sha256',
      string_to_sign: '{{nonce}}',
      signature_header: 'x-sig',
      nonce_header: 'x-n',
    });
    const m = createHmacMechanic(options);
    const a = outbound('GET', 'https://api.example/');
    const b = outbound('GET', 'https://api.example/');
    await m.apply(a, fakeContext(cred({ secret: 's' })));
    await m.apply(b, fakeContext(cred({ secret: 's' })));
    expect(a.headers['x-n']).toMatch(/^[0-9a-f]{32}$/);
    expect(a.headers['x-n']).not.toBe(b.headers['x-n']);
  });
});

describe('hmac failures', () => {
  it.each([
    ['no preset and no algorithm', { string_to_sign: '{{body}}', signature_header: 'x' }],
    ['unknown preset', { preset: 'nope' }],
    ['unknown placeholder', { preset: 'github-webhook', string_to_sign: '{{secret}}' }],
    [
      'signature template without {{signature}}',
      { preset: 'github-webhook', signature_template: 'x' },
    ],
    ['unknown option', { preset: 'github-webhook', extra: 1 }],
    ['bad algorithm', { preset: 'github-webhook', algorithm: 'md5' }],
    ['forbidden header', { preset: 'github-webhook', signature_header: 'host' }],
    ['no credential', { credential: undefined, preset: 'github-webhook' }],
  ])('rejects config: %s', (_name, options) => {
    expect(hmacOptionsSchema.safeParse({ credential: 'signing', ...options }).success).toBe(false);
  });

  it.each([
    ['secret', 'github-webhook', { key_id: 'k' }],
    ['key_id', 'coinbase-v2', { secret: 's' }],
    ['passphrase', 'coinbase-exchange', { secret: 'c2VjcmV0', key_id: 'k' }],
  ] as const)('missing field %s -> credential_unavailable', async (_field, preset, fields) => {
    const m = createHmacMechanic(parse({ preset }));
    await expect(
      m.apply(outbound('GET', 'https://api.example/'), fakeContext(cred(fields))),
    ).rejects.toMatchObject({ code: 'credential_unavailable' });
  });
});
