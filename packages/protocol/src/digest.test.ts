// RFC 9530 Content-Digest with the RFC sample values.
import { describe, expect, it } from 'vitest';
import { createContentDigest, verifyContentDigest, webCryptoDigest } from './digest.js';
import { code } from './test/code.js';

const BODY = '{"hello": "world"}';
const SHA256 = 'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:';
const SHA512 =
  'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:';

describe('createContentDigest', () => {
  it('matches the RFC samples', async () => {
    expect(await createContentDigest(BODY)).toBe(SHA256);
    expect(await createContentDigest(new TextEncoder().encode(BODY), 'sha-512')).toBe(SHA512);
  });
});

describe('webCryptoDigest (no copy of its own)', () => {
  it('hashes exactly a view into a larger buffer', async () => {
    const whole = new TextEncoder().encode(`xx${BODY}yy`);
    const view = whole.subarray(2, 2 + BODY.length);
    expect(
      `sha-256=:${Buffer.from(await webCryptoDigest('sha-256', view)).toString('base64')}:`,
    ).toBe(SHA256);
  });

  it('hashes the bytes as they were when called: WebCrypto copies them', async () => {
    const bytes = new TextEncoder().encode(BODY);
    const pending = webCryptoDigest('sha-256', bytes);
    bytes.fill(0);
    expect(`sha-256=:${Buffer.from(await pending).toString('base64')}:`).toBe(SHA256);
  });

  it('copies a view on a SharedArrayBuffer', async () => {
    const shared = new Uint8Array(new SharedArrayBuffer(BODY.length));
    shared.set(new TextEncoder().encode(BODY));
    expect(
      `sha-256=:${Buffer.from(await webCryptoDigest('sha-256', shared)).toString('base64')}:`,
    ).toBe(SHA256);
  });
});

describe('verifyContentDigest', () => {
  it.each([
    [SHA256, BODY, undefined],
    [SHA512, BODY, undefined],
    [`${SHA256}, ${SHA512}`, BODY, undefined],
    [`md5=:Sd/dVLAcvNLSq16eXua5uQ==:, ${SHA256}`, BODY, undefined],
    [SHA256, `${BODY} `, 'digest_mismatch'],
    [`${SHA256}, sha-512=:AAAA:`, BODY, 'digest_mismatch'],
    ['md5=:Sd/dVLAcvNLSq16eXua5uQ==:', BODY, 'digest_invalid'],
    ['sha=:07CavjDP4u3/TungoUHJO/Wzr4c=:', BODY, 'digest_invalid'],
    ['sha-256="X48E"', BODY, 'digest_invalid'],
    ['sha-256=:X48E', BODY, 'digest_invalid'],
    ['', BODY, 'digest_invalid'],
  ])('%s', async (header, body, expected) => {
    expect(await code(verifyContentDigest(header, body))).toBe(expected);
  });
  it('verifies an empty body', async () => {
    expect(
      await code(verifyContentDigest(await createContentDigest(''), undefined)),
    ).toBeUndefined();
  });
});
