// Envelope encryption: round trip, AAD binding, tamper detection, re-wrapping.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openEnvelope, rewrapEnvelope, sealEnvelope, sealedKeyVersion } from './envelope.js';
import type { MasterKey } from './master-key.js';

const k1: MasterKey = { version: 1, key: randomBytes(32) };
const k2: MasterKey = { version: 2, key: randomBytes(32) };
const ring =
  (...keys: MasterKey[]) =>
  (v: number): MasterKey | undefined =>
    keys.find((k) => k.version === v);
const secret = Buffer.from('ghp_super-secret-value-0123456789');

const flip = (b64: string, index = 0): string => {
  const bytes = Buffer.from(b64, 'base64');
  bytes[index % bytes.length] = (bytes[index % bytes.length] ?? 0) ^ 0x01;
  return bytes.toString('base64');
};

describe('envelope', () => {
  it('round-trips and is randomised', () => {
    const a = sealEnvelope(k1, 'credential github 1', secret);
    const b = sealEnvelope(k1, 'credential github 1', secret);
    expect(a).not.toBe(b);
    expect(openEnvelope(ring(k1), 'credential github 1', a)).toEqual(secret);
    expect(sealedKeyVersion(a)).toBe(1);
    const parsed = JSON.parse(a) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['v', 'kv', 'wiv', 'wk', 'wtag', 'iv', 'ct', 'tag']);
    expect(parsed.v).toBe(1);
    expect(a).not.toContain(secret.toString());
    expect(a).not.toContain(secret.toString('base64'));
  });

  it('binds the context (record name and version)', () => {
    const sealed = sealEnvelope(k1, 'credential github 1', secret);
    for (const context of ['credential github 2', 'credential gitlab 1', 'secret x']) {
      expect(() => openEnvelope(ring(k1), context, sealed)).toThrow(
        expect.objectContaining({ code: 'credential_unavailable' }),
      );
    }
  });

  it.each(['wiv', 'wk', 'wtag', 'iv', 'ct', 'tag'])('detects a flipped byte in %s', (field) => {
    const sealed = JSON.parse(sealEnvelope(k1, 'c', secret)) as Record<string, string>;
    for (const index of [0, 5, 11]) {
      const tampered = JSON.stringify({ ...sealed, [field]: flip(sealed[field] ?? '', index) });
      expect(() => openEnvelope(ring(k1), 'c', tampered)).toThrow(
        expect.objectContaining({ code: 'credential_unavailable' }),
      );
    }
  });

  it('refuses a wrong master key, an unknown version, and a changed key version', () => {
    const sealed = sealEnvelope(k1, 'c', secret);
    const wrong: MasterKey = { version: 1, key: randomBytes(32) };
    const fails = (fn: () => unknown) =>
      expect(fn).toThrow(expect.objectContaining({ code: 'credential_unavailable' }));
    fails(() => openEnvelope(ring(wrong), 'c', sealed));
    fails(() => openEnvelope(ring(k2), 'c', sealed));
    // Claiming another version, even one whose key is known, fails (AAD binds kv).
    const relabelled = JSON.stringify({ ...(JSON.parse(sealed) as object), kv: 2 });
    fails(() => openEnvelope(ring(k1, { version: 2, key: k1.key }), 'c', relabelled));
  });

  it.each([
    ['not json', 'nope'],
    ['null', 'null'],
    ['future format', JSON.stringify({ v: 2 })],
    ['missing fields', JSON.stringify({ v: 1, kv: 1 })],
    [
      'bad kv',
      JSON.stringify({ v: 1, kv: 'one', wiv: '', wk: '', wtag: '', iv: '', ct: '', tag: '' }),
    ],
    [
      'bad base64',
      JSON.stringify({ v: 1, kv: 1, wiv: '!!', wk: '', wtag: '', iv: '', ct: '', tag: '' }),
    ],
  ])('refuses a malformed blob (%s)', (_label, blob) => {
    expect(() => openEnvelope(ring(k1), 'c', blob)).toThrow(
      expect.objectContaining({ code: 'credential_unavailable' }),
    );
  });

  it('re-wraps the data key without touching the payload', () => {
    const sealed = sealEnvelope(k1, 'c', secret);
    const rewrapped = rewrapEnvelope(ring(k1), sealed, k2);
    const before = JSON.parse(sealed) as Record<string, unknown>;
    const after = JSON.parse(rewrapped) as Record<string, unknown>;
    expect(after.kv).toBe(2);
    for (const f of ['iv', 'ct', 'tag']) expect(after[f]).toBe(before[f]);
    for (const f of ['wiv', 'wk', 'wtag']) expect(after[f]).not.toBe(before[f]);
    expect(openEnvelope(ring(k2), 'c', rewrapped)).toEqual(secret);
    expect(() => openEnvelope(ring(k1), 'c', rewrapped)).toThrow();
    expect(() => rewrapEnvelope(ring(k2), sealed, k2)).toThrow(
      expect.objectContaining({ code: 'credential_unavailable' }),
    );
  });
});
