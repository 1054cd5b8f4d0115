// RFC 8941 parsing and serialisation: table cases, round trips and a fuzz property that
// nothing but NexusError is ever thrown.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isNexusError } from './errors.js';
import {
  SfDecimal,
  SfToken,
  parseDictionary,
  parseInnerList,
  parseItem,
  parseList,
  parseSfString,
  serializeBareItem,
  serializeDictionary,
  serializeItem,
  serializeList,
  type SfDictionary,
} from './structured-fields.js';

describe('round trips (canonical input is reproduced)', () => {
  it.each([
    'a=1, b=2;x=?0, c',
    'sig1=("@method" "@path");created=1618884473;keyid="k"',
    'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
    'a=(1 2.5 "x" tok */* :AQID:);p, b=-999999999999999',
    'a=1.123, b;c=abc:def/g',
    'a=()',
  ])('dictionary %s', (text) => {
    expect(serializeDictionary(parseDictionary(text))).toBe(text);
  });
  it.each(['1, 2, (a b);c="d"', 'sugar, tea, rum'])('list %s', (text) => {
    expect(serializeList(parseList(text))).toBe(text);
  });
  it('normalises whitespace and decimals', () => {
    expect(serializeDictionary(parseDictionary('a=1 ,\tb=2.50'))).toBe('a=1, b=2.5');
    expect(serializeItem(parseItem('  "x"  '))).toBe('"x"');
  });
  it('decodes values', () => {
    const d = parseDictionary('a="q\\"\\\\", b=tok, c=:AQID:, d=1.5, e=?0');
    expect(d.get('a')).toMatchObject({ value: 'q"\\' });
    expect((d.get('b') as { value: SfToken }).value).toEqual(new SfToken('tok'));
    expect((d.get('c') as { value: Uint8Array }).value).toEqual(new Uint8Array([1, 2, 3]));
    expect((d.get('d') as { value: SfDecimal }).value).toEqual(new SfDecimal(1.5));
    expect(d.get('e')).toMatchObject({ value: false });
    expect(parseSfString('"hello"')).toBe('hello');
    expect(parseInnerList('("a" "b");x=1').items).toHaveLength(2);
  });
  it('keeps the last duplicate key unless asked to reject', () => {
    expect(parseDictionary('a=1, a=2').get('a')).toMatchObject({ value: 2 });
    expect(() => parseDictionary('a=1, a=2', { rejectDuplicateKeys: true })).toThrow();
  });
});

describe('rejects malformed input with the caller code', () => {
  it.each([
    'a=',
    'a=1,',
    'A=1',
    'a="unterminated',
    'a="bad\\x"',
    'a=:not base64!:',
    'a=1.2345',
    'a=1234567890123456',
    'a=(1 2',
    'a=?2',
    'a=@123',
    'a=%"x"',
    'a=1 b=2',
    'a="é"',
  ])('%s', (text) => {
    try {
      parseDictionary(text, { code: 'digest_invalid' });
      expect.unreachable();
    } catch (err) {
      expect(isNexusError(err) && err.code).toBe('digest_invalid');
    }
  });
  it('sf-string parsing rejects tokens and parameters', () => {
    expect(() => parseSfString('token', { code: 'intent_invalid' })).toThrow();
    expect(() => parseSfString('"x";a=1')).toThrow();
  });
  it('serializer refuses values it cannot write', () => {
    expect(() => serializeBareItem('é')).toThrow();
    expect(() => serializeBareItem(1.5)).toThrow();
    expect(() => serializeBareItem(new SfToken('1abc'))).toThrow();
  });
});

describe('properties', () => {
  const fieldChars = fc.string({
    unit: fc.constantFrom(...'abc=;,()" :*?1.-\\/\t+AZ9%@'.split('')),
    maxLength: 40,
  });
  it('parsers throw nothing but NexusError', () => {
    fc.assert(
      fc.property(fc.oneof(fieldChars, fc.string({ maxLength: 40 })), (text) => {
        for (const parse of [parseDictionary, parseList, parseItem, parseInnerList]) {
          try {
            parse(text);
          } catch (err) {
            if (!isNexusError(err)) return false;
          }
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });
  it('serialize . parse is the identity on generated dictionaries', () => {
    const key = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/);
    const bare = fc.oneof(
      fc.integer({ min: -1e9, max: 1e9 }),
      fc.boolean(),
      fc.stringMatching(/^[ -~]{0,12}$/),
      fc.uint8Array({ maxLength: 12 }),
      fc.stringMatching(/^[a-z][a-z0-9:/]{0,6}$/).map((t) => new SfToken(t)),
    );
    const params = fc.array(fc.tuple(key, bare), { maxLength: 3 });
    const item = fc.record({ value: bare, params }).map(({ value, params }) => ({
      kind: 'item' as const,
      value,
      params: new Map(params),
    }));
    const member = fc.oneof(
      item,
      fc.record({ items: fc.array(item, { maxLength: 3 }), params }).map(({ items, params }) => ({
        kind: 'inner' as const,
        items,
        params: new Map(params),
      })),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(key, member), { maxLength: 5 }), (entries) => {
        const dict: SfDictionary = new Map(entries);
        const text = serializeDictionary(dict);
        return serializeDictionary(parseDictionary(text)) === text;
      }),
      { numRuns: 500 },
    );
  });
});
