// RFC 9421 generic layer: component derivation, base creation, sign/verify for every
// algorithm, and the property that a mutated signature, parameter or component never verifies.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isNexusError } from '../errors.js';
import type { CryptoKey } from '../webcrypto.js';
import { SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from './algorithms.js';
import { deriveComponent, toComponentId, type ComponentInput } from './components.js';
import type { HttpMessage } from './message.js';
import { createSignatureBase, parseSignatures, signMessage, verifyMessage } from './signatures.js';

const req: HttpMessage = {
  method: 'POST',
  url: 'https://www.Example.com:443/path/a%2Fb?param=value&foo=bar&baz=batman&qux=&var=this%20is%20a%20big%0Avalue&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something',
  headers: {
    Host: 'www.example.com',
    'X-Multi': ['  a ', 'b  '],
    'Example-Dict': ' a=1,    b=2;x=1;y=2,   c=(a   b   c)',
    'Content-Type': 'application/json',
  },
};
const res: HttpMessage = { status: 200, headers: [['content-type', 'text/plain']] };

describe('deriveComponent', () => {
  const derive = (c: ComponentInput, m: HttpMessage = req) =>
    deriveComponent(toComponentId(c), { message: m, request: req });
  it.each<[ComponentInput, string]>([
    ['@method', 'POST'],
    ['@authority', 'www.example.com'],
    ['@scheme', 'https'],
    ['@path', '/path/a%2Fb'],
    ['@query', `?${req.url!.split('?')[1]}`],
    ['x-multi', 'a, b'],
    ['example-dict', 'a=1,    b=2;x=1;y=2,   c=(a   b   c)'],
    [{ name: 'example-dict', params: { sf: true } }, 'a=1, b=2;x=1;y=2, c=(a b c)'],
    [{ name: 'example-dict', params: { key: 'b' } }, '2;x=1;y=2'],
    [{ name: 'x-multi', params: { bs: true } }, ':YQ==:, :Yg==:'],
    [{ name: '@query-param', params: { name: 'baz' } }, 'batman'],
    [{ name: '@query-param', params: { name: 'qux' } }, ''],
    [{ name: '@query-param', params: { name: 'var' } }, 'this%20is%20a%20big%0Avalue'],
    [{ name: '@query-param', params: { name: 'bar' } }, 'with%20plus%20whitespace'],
    [{ name: '@query-param', params: { name: 'fa%C3%A7ade%22%3A%20' } }, 'something'],
  ])('%j', (c, value) => {
    expect(derive(c)).toBe(value);
  });
  it('@request-target and @target-uri keep the raw text', () => {
    expect(derive('@request-target')).toBe(`/path/a%2Fb?${req.url!.split('?')[1]}`);
    expect(derive('@target-uri')).toBe(req.url);
    expect(derive('@query', { ...req, url: 'https://a.example/x' })).toBe('?');
    expect(derive('@path', { ...req, url: 'https://a.example' })).toBe('/');
    expect(derive('@authority', { ...req, url: 'http://A.example:8080/' })).toBe('a.example:8080');
  });
  it('responses: @status and ;req', () => {
    expect(derive('@status', res)).toBe('200');
    expect(derive({ name: '@method', params: { req: true } }, res)).toBe('POST');
    expect(derive({ name: 'content-type', params: { req: true } }, res)).toBe('application/json');
  });
  it.each<[ComponentInput, HttpMessage?]>([
    ['missing-field'],
    ['@unknown'],
    ['@status'],
    ['@method', res],
    [{ name: '@query-param', params: { name: 'nope' } }],
    [{ name: '@query-param' }],
    [{ name: 'example-dict', params: { key: 'zz' } }],
    [{ name: 'x-multi', params: { sf: true } }],
    [{ name: 'x-multi', params: { bs: true, sf: true } }],
    [{ name: 'x-multi', params: { tr: true } }],
    [{ name: 'X-Multi' }],
    [{ name: '@method', params: { sf: true } }],
  ])('rejects %j', (c, m) => {
    try {
      derive(c, m);
      expect.unreachable();
    } catch (err) {
      expect(isNexusError(err) && err.code).toBe('signature_invalid');
    }
  });
  it('rejects a repeated @query-param', () => {
    expect(() =>
      derive(
        { name: '@query-param', params: { name: 'a' } },
        { ...req, url: 'https://x.example/?a=1&a=2' },
      ),
    ).toThrow();
  });
});

describe('createSignatureBase', () => {
  it('rejects duplicate components and line breaks in values', () => {
    const ids = [toComponentId('@method'), toComponentId('@method')];
    expect(() => createSignatureBase(req, ids, new Map())).toThrow();
    const bad: HttpMessage = { ...req, headers: { 'x-evil': 'a\nb' } };
    expect(() => createSignatureBase(bad, [toComponentId('x-evil')], new Map())).toThrow();
  });
});

async function keyPair(alg: SignatureAlgorithm): Promise<{ sign: CryptoKey; verify: CryptoKey }> {
  const s = globalThis.crypto.subtle;
  const params = {
    ed25519: { name: 'Ed25519' },
    'ecdsa-p256-sha256': { name: 'ECDSA', namedCurve: 'P-256' },
    'hmac-sha256': { name: 'HMAC', hash: 'SHA-256' },
    'rsa-pss-sha512': {
      name: 'RSA-PSS',
      hash: 'SHA-512',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    'rsa-v1_5-sha256': {
      name: 'RSASSA-PKCS1-v1_5',
      hash: 'SHA-256',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
  }[alg];
  const k = (await s.generateKey(params, false, ['sign', 'verify'])) as
    CryptoKey | { privateKey: CryptoKey; publicKey: CryptoKey };
  return 'privateKey' in k ? { sign: k.privateKey, verify: k.publicKey } : { sign: k, verify: k };
}

const COMPONENTS: ComponentInput[] = [
  '@method',
  '@authority',
  '@path',
  'content-type',
  { name: 'example-dict', params: { key: 'a' } },
];
const PARAMS = { created: 1700000000, expires: 1700000030, nonce: 'n-123456789012345', tag: 't' };

describe.each(SIGNATURE_ALGORITHMS)('%s', (alg) => {
  it('signs and verifies; verification fails with another key', async () => {
    const keys = await keyPair(alg);
    const signed = await signMessage(req, {
      label: 'sig1',
      components: COMPONENTS,
      params: PARAMS,
      key: keys.sign,
      algorithm: alg,
    });
    const msg: HttpMessage = {
      ...req,
      headers: {
        ...req.headers,
        'signature-input': signed.signatureInput,
        signature: signed.signature,
      },
    };
    const verified = await verifyMessage(msg, { key: keys.verify, algorithm: alg });
    expect(verified.signatureBase).toBe(signed.signatureBase);
    expect(verified.label).toBe('sig1');
    const other = await keyPair(alg);
    await expect(verifyMessage(msg, { key: other.verify, algorithm: alg })).rejects.toMatchObject({
      code: 'signature_invalid',
    });
    await expect(
      verifyMessage(msg, { key: keys.verify, algorithm: alg, now: 1700000031 }),
    ).rejects.toMatchObject({ code: 'signature_expired' });
  });
});

describe('parseSignatures', () => {
  it('reports missing and mismatched fields', () => {
    expect(() => parseSignatures({ headers: {} })).toThrow(
      expect.objectContaining({ code: 'signature_missing' }),
    );
    expect(() =>
      parseSignatures({ headers: { 'signature-input': 'a=()', signature: 'b=:AA==:' } }),
    ).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
    expect(() =>
      parseSignatures({
        headers: { 'signature-input': 'a=();created="x"', signature: 'a=:AA==:' },
      }),
    ).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
  });
  it('throws nothing but NexusError on arbitrary Signature-Input text', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 60 }),
        fc.string({
          unit: fc.constantFrom(...'sig1=("@method" ;created=1)"\\:AB=, '.split('')),
          maxLength: 60,
        }),
        (a, b) => {
          for (const input of [a, b]) {
            try {
              parseSignatures({ headers: { 'signature-input': input, signature: 'sig1=:AAAA:' } });
            } catch (err) {
              if (!isNexusError(err)) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 1500 },
    );
  });
});

describe('mutations never verify (ed25519)', async () => {
  const keys = await keyPair('ed25519');
  const signed = await signMessage(req, {
    label: 'sig1',
    components: COMPONENTS,
    params: PARAMS,
    key: keys.sign,
    algorithm: 'ed25519',
  });
  const verifies = async (input: string, sig: string, m: HttpMessage = req): Promise<boolean> => {
    try {
      await verifyMessage(
        { ...m, headers: { ...m.headers, 'signature-input': input, signature: sig } },
        { key: keys.verify, algorithm: 'ed25519' },
      );
      return true;
    } catch (err) {
      if (!isNexusError(err)) throw err;
      return false;
    }
  };
  it('the unmodified message verifies', async () => {
    expect(await verifies(signed.signatureInput, signed.signature)).toBe(true);
  });
  it('a flipped signature bit', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 63 }), fc.nat({ max: 7 }), async (i, bit) => {
        const bytes = new Uint8Array(signed.signatureBytes);
        bytes[i]! ^= 1 << bit;
        const b64 = btoa(String.fromCharCode(...bytes));
        return !(await verifies(signed.signatureInput, `sig1=:${b64}:`));
      }),
      { numRuns: 100 },
    );
  });
  it('a changed parameter or component list', async () => {
    const mutations = [
      signed.signatureInput.replace('created=1700000000', 'created=1700000001'),
      signed.signatureInput.replace('expires=1700000030', 'expires=1700000090'),
      signed.signatureInput.replace('tag="t"', 'tag="u"'),
      signed.signatureInput.replace(';tag="t"', ''),
      `${signed.signatureInput};keyid="x"`,
      signed.signatureInput.replace('"@method" ', ''),
      signed.signatureInput.replace('"@method" "@authority"', '"@authority" "@method"'),
      signed.signatureInput.replace('"example-dict";key="a"', '"example-dict"'),
    ];
    for (const m of mutations) expect(await verifies(m, signed.signature)).toBe(false);
  });
  it('a changed covered component value', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('method', 'url', 'content-type', 'dict'),
        fc.stringMatching(/^[a-z]{1,8}$/),
        async (what, junk) => {
          const m: HttpMessage = structuredClone({
            ...req,
            headers: { ...(req.headers as Record<string, string>) },
          });
          const h = m.headers as Record<string, string>;
          if (what === 'method') m.method = `${m.method}${junk.toUpperCase()}`;
          if (what === 'url') m.url = m.url!.replace('/path/', `/${junk}/`);
          if (what === 'content-type') h['Content-Type'] = `text/${junk}`;
          if (what === 'dict') h['Example-Dict'] = `a=2${junk.length}, b=2`;
          return !(await verifies(signed.signatureInput, signed.signature, m));
        },
      ),
      { numRuns: 100 },
    );
  });
});
