// Strict base64 / base64url decoding against a reference built on Node's Buffer: the same
// bytes for every canonical input, undefined for everything else (issue 14 step 2 rewrote
// the decoder to read four characters at a time).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { base64Decode, base64Encode, base64UrlDecode } from './encoding.js';

/** Strict reference: standard alphabet, correct padding or none, zero unused bits. */
function reference(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const padded = text.endsWith('=');
  if (padded && text.length % 4 !== 0) return undefined;
  const bare = text.replace(/=+$/, '');
  if (padded && bare.length % 4 === 0) return undefined; // "====" and the like
  if (bare.length % 4 === 1) return undefined;
  const bytes = Buffer.from(bare, 'base64');
  if (bytes.toString('base64').replace(/=+$/, '') !== bare) return undefined; // non-zero unused bits
  return new Uint8Array(bytes);
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \u00e9\u0100';

describe('base64Decode', () => {
  it('round-trips base64Encode, padded and unpadded', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const text = base64Encode(bytes);
        expect(base64Decode(text)).toEqual(bytes);
        expect(base64Decode(text.replace(/=+$/, ''))).toEqual(bytes);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with the strict reference on arbitrary text over the alphabet and more', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...ALPHABET), { maxLength: 14 }).map((cs) => cs.join('')),
        (text) => {
          expect(base64Decode(text)).toEqual(reference(text));
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('refuses non-canonical, misplaced padding and foreign characters', () => {
    for (const bad of ['A', 'AB=', 'AB==C', 'AR==', 'ABC=D', 'AB=C', '====', 'A===', '\u0141BCD']) {
      expect(base64Decode(bad), bad).toBeUndefined();
    }
    expect(base64Decode('')).toEqual(new Uint8Array(0));
    expect(base64Decode('AA==')).toEqual(new Uint8Array([0]));
    expect(base64UrlDecode('-_8')).toEqual(new Uint8Array([0xfb, 0xff]));
    expect(base64UrlDecode('+/8')).toBeUndefined();
  });
});
