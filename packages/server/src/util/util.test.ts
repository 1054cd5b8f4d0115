// Tests for the constant-time comparison and id helpers.
import { describe, expect, it } from 'vitest';
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
