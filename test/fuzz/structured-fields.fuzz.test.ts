/**
 * Issue 6 fuzzing: RFC 8941 structured fields and the Signature-Input / Signature parser.
 * Properties: no input makes a parser throw anything but a NexusError; what parses
 * re-serializes to a canonical text that parses to the same thing; generated values
 * round-trip; an sf-string only ever decodes to printable ASCII (the intent rule).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  SfToken,
  isNexusError,
  parseDictionary,
  parseInnerList,
  parseItem,
  parseList,
  parseSfString,
  parseSignatures,
  serializeDictionary,
  serializeItem,
  serializeList,
  type SfDictionary,
} from '@nexus-proxy/protocol';
import { params, TIMEOUT } from './runs.js';

/** Text built from the characters structured fields care about, plus anything. */
const fieldText = fc.oneof(
  fc.string({
    unit: fc.constantFrom(...'abc=;,()" :*?1.-\\/\t+AZ9%@<>{}[]\u00e9\u0000'.split('')),
    maxLength: 60,
  }),
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
);

const key = fc.stringMatching(/^[a-z*][a-z0-9_.*-]{0,8}$/);
const bare = fc.oneof(
  fc.integer({ min: -999_999_999_999_999, max: 999_999_999_999_999 }),
  fc.boolean(),
  fc.stringMatching(/^[ -~]{0,16}$/),
  fc.uint8Array({ maxLength: 16 }),
  fc.stringMatching(/^[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,8}$/).map((t) => new SfToken(t)),
);
const sfParams = fc.array(fc.tuple(key, bare), { maxLength: 3 }).map((p) => new Map(p));
const item = fc
  .record({ value: bare, params: sfParams })
  .map((i) => ({ kind: 'item' as const, ...i }));
const member = fc.oneof(
  item,
  fc
    .record({ items: fc.array(item, { maxLength: 4 }), params: sfParams })
    .map((l) => ({ kind: 'inner' as const, ...l })),
);

function onlyNexusErrors(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    return isNexusError(err);
  }
}

describe('fuzz: structured fields', () => {
  it(
    'parsers throw nothing but NexusError, and what parses re-parses to the same text',
    () => {
      fc.assert(
        fc.property(fieldText, (text) => {
          const parsers = [
            [parseDictionary, serializeDictionary],
            [parseList, serializeList],
            [parseItem, serializeItem],
          ] as const;
          for (const [parse, serialize] of parsers) {
            let value: unknown;
            try {
              value = parse(text);
            } catch (err) {
              expect(isNexusError(err)).toBe(true);
              continue;
            }
            const canonical = (serialize as (v: unknown) => string)(value);
            expect((serialize as (v: unknown) => string)(parse(canonical))).toBe(canonical);
          }
          expect(onlyNexusErrors(() => parseInnerList(text))).toBe(true);
        }),
        params(3000),
      );
    },
    TIMEOUT,
  );

  it(
    'generated dictionaries round-trip exactly',
    () => {
      fc.assert(
        fc.property(
          fc.uniqueArray(fc.tuple(key, member), { selector: ([k]) => k, maxLength: 6 }),
          (entries) => {
            const dict: SfDictionary = new Map(entries);
            const text = serializeDictionary(dict);
            expect(serializeDictionary(parseDictionary(text))).toBe(text);
          },
        ),
        params(1000),
      );
    },
    TIMEOUT,
  );

  it(
    'an sf-string decodes only to printable ASCII, or is refused with the caller code',
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fieldText,
            fc.string({ maxLength: 40 }).map((s) => `"${s}"`),
          ),
          (text) => {
            try {
              const s = parseSfString(text, { code: 'intent_invalid' });
              expect(s).toMatch(/^[\x20-\x7e]*$/);
            } catch (err) {
              expect(isNexusError(err) && err.code).toBe('intent_invalid');
            }
          },
        ),
        params(3000),
      );
    },
    TIMEOUT,
  );

  it(
    'Signature-Input / Signature: any pair parses to labelled signatures or fails with a signature code',
    () => {
      const sigInput = fc.oneof(
        fieldText,
        fc
          .tuple(
            fc.constantFrom('wimse', 'sig1', 'a'),
            fc.array(
              fc.constantFrom(
                '"@method"',
                '"@request-target"',
                '"content-digest"',
                '"x";sf',
                '"@query-param";name="a"',
                '1',
                'tok',
              ),
              { maxLength: 5 },
            ),
            fc.array(
              fc.constantFrom(
                ';created=1',
                ';expires=2',
                ';nonce="abcdefghijklmnop"',
                ';keyid="k"',
                ';alg=1',
                ';created="x"',
                ';tag="t"',
              ),
              { maxLength: 5 },
            ),
          )
          .map(([label, comps, ps]) => `${label}=(${comps.join(' ')})${ps.join('')}`),
      );
      const sig = fc.oneof(
        fieldText,
        fc
          .tuple(fc.constantFrom('wimse', 'sig1'), fc.uint8Array({ maxLength: 70 }))
          .map(([label, b]) => `${label}=:${Buffer.from(b).toString('base64')}:`),
      );
      fc.assert(
        fc.property(sigInput, sig, (input, signature) => {
          try {
            const parsed = parseSignatures(
              {
                method: 'GET',
                url: 'http://p/s/x',
                headers: { 'signature-input': input, signature },
              },
              { rejectDuplicateKeys: true },
            );
            for (const [label, s] of parsed) {
              expect(s.label).toBe(label);
              expect(s.signature).toBeInstanceOf(Uint8Array);
              for (const c of s.components) expect(typeof c.name).toBe('string');
            }
          } catch (err) {
            expect(
              isNexusError(err) && ['signature_invalid', 'signature_missing'].includes(err.code),
            ).toBe(true);
          }
        }),
        params(3000),
      );
    },
    TIMEOUT,
  );
});
