// Tests for the constant-time comparison, id and digest helpers.
import { createContentDigest, verifyContentDigest, webCryptoDigest } from '@nexus-proxy/protocol';
import { describe, expect, it } from 'vitest';
import { serverDigest } from './digest.js';
import { randomId, sha256Hex } from './ids.js';
import { timingSafeEqualString } from './timing-safe.js';

describe('timingSafeEqualString', () => {
  it.each([
    ['', '', true],
    ['abc', 'abc', true],
    ['abc', 'abd', false],
    ['abc', 'abcd', false],
    ['abcd', 'abc', false],
    ['', 'a', false],
    ['é', 'é', true],
  ])('%j vs %j -> %s', (a, b, expected) => {
    expect(timingSafeEqualString(a, b)).toBe(expected);
  });
});

describe('randomId', () => {
  it('is base64url of the requested size and unique', () => {
    const a = randomId();
    expect(a).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Buffer.from(a, 'base64url')).toHaveLength(16);
    expect(randomId(32)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const seen = new Set(Array.from({ length: 1000 }, () => randomId()));
    expect(seen.size).toBe(1000);
    // Ids of mixed sizes across several refills of the random pool.
    const mixed = Array.from({ length: 200 }, (_v, i) => randomId([16, 1024, 7, 600][i % 4]));
    expect(new Set(mixed).size).toBe(200);
    expect(mixed.filter((id) => Buffer.from(id, 'base64url').length === 1024)).toHaveLength(50);
  });

  it('rejects a bad size', () => {
    expect(() => randomId(0)).toThrow(RangeError);
    expect(() => randomId(1.5)).toThrow(RangeError);
  });
});

describe('sha256Hex', () => {
  it('matches the known vector for strings and bytes', () => {
    const abc = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
    expect(sha256Hex('abc')).toBe(abc);
    expect(sha256Hex(new Uint8Array([0x61, 0x62, 0x63]))).toBe(abc);
  });
});

describe('serverDigest', () => {
  it('matches the WebCrypto digest below, at and above the synchronous limit', async () => {
    for (const size of [0, 1, 1024, 64 * 1024, 64 * 1024 + 1, 300_000]) {
      const body = new Uint8Array(size).map((_v, i) => (i * 31 + size) & 0xff);
      for (const alg of ['sha-256', 'sha-512'] as const) {
        expect(Buffer.from(await serverDigest(alg, body)).toString('hex')).toBe(
          Buffer.from(await webCryptoDigest(alg, body)).toString('hex'),
        );
      }
    }
  });
  it('is what verifyContentDigest checks with when passed', async () => {
    const header = await createContentDigest('{"a":1}');
    expect(await verifyContentDigest(header, '{"a":1}', serverDigest)).toEqual(['sha-256']);
    await expect(verifyContentDigest(header, '{"a":2}', serverDigest)).rejects.toMatchObject({
      code: 'digest_mismatch',
    });
    // The function passed is the one used: a wrong hash makes a correct body mismatch.
    await expect(
      verifyContentDigest(header, '{"a":1}', () => new Uint8Array(32)),
    ).rejects.toMatchObject({ code: 'digest_mismatch' });
  });
});
