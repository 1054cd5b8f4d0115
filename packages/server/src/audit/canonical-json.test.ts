// RFC 8785 examples (§3.2.2, §3.2.3, Appendix B numbers) and the rejection rules.
import { describe, expect, it } from 'vitest';
import { canonicalize } from './canonical-json.js';
import { pathWithoutQuery } from './record.js';

function fromBits(hex: string): number {
  const b = Buffer.from(hex, 'hex');
  return b.readDoubleBE(0);
}

describe('canonicalize (RFC 8785)', () => {
  it('§3.2.2: the structure example', () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
        ' "literals": [null, true, false]}',
    ) as unknown;
    expect(canonicalize(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('§3.2.3: sorts keys by UTF-16 code units', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    const values = Object.values(JSON.parse(canonicalize(input)) as Record<string, string>);
    const keys = [...canonicalize(input).matchAll(/"([^"]*)":"([^"]*)"/g)].map((m) => m[2]);
    expect(keys).toEqual([
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ]);
    expect(values).toHaveLength(7);
  });

  it.each([
    ['0000000000000000', '0'],
    ['8000000000000000', '0'],
    ['0000000000000001', '5e-324'],
    ['8000000000000001', '-5e-324'],
    ['7fefffffffffffff', '1.7976931348623157e+308'],
    ['ffefffffffffffff', '-1.7976931348623157e+308'],
    ['4340000000000000', '9007199254740992'],
    ['c340000000000000', '-9007199254740992'],
    ['4430000000000000', '295147905179352830000'],
    ['44b52d02c7e14af5', '9.999999999999997e+22'],
    ['44b52d02c7e14af6', '1e+23'],
    ['44b52d02c7e14af7', '1.0000000000000001e+23'],
    ['444b1ae4d6e2ef4e', '999999999999999700000'],
    ['444b1ae4d6e2ef4f', '999999999999999900000'],
    ['444b1ae4d6e2ef50', '1e+21'],
    ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
    ['3eb0c6f7a0b5ed8d', '0.000001'],
    ['41b3de4355555553', '333333333.3333332'],
    ['41b3de4355555554', '333333333.33333325'],
    ['41b3de4355555555', '333333333.3333333'],
    ['41b3de4355555556', '333333333.3333334'],
    ['41b3de4355555557', '333333333.33333343'],
    ['becbf647612f3696', '-0.0000033333333333333333'],
    ['43143ff3c1cb0959', '1424953923781206.2'],
  ])('Appendix B: number %s -> %s', (bits, text) => {
    expect(canonicalize(fromBits(bits))).toBe(text);
  });

  it.each([
    ['NaN', fromBits('7fffffffffffffff')],
    ['Infinity', fromBits('7ff0000000000000')],
    ['-Infinity', -Infinity],
  ])('rejects %s with internal_error', (_n, value) => {
    expect(() => canonicalize({ a: value })).toThrow(
      expect.objectContaining({ code: 'internal_error' }),
    );
  });

  it.each([
    ['undefined in an array', [1, undefined]],
    ['a Date', { d: new Date(0) }],
    ['a bigint', { n: 1n }],
    ['a function', { f: () => 1 }],
    ['a lone surrogate', { s: 'a\ud800' }],
    ['a lone surrogate key', { ['\udc00']: 1 }],
    ['top-level undefined', undefined],
  ])('rejects %s with internal_error', (_n, value) => {
    expect(() => canonicalize(value)).toThrow(expect.objectContaining({ code: 'internal_error' }));
  });

  it('omits undefined object members and nests', () => {
    expect(canonicalize({ b: undefined, a: { z: [1, 'x', { y: null }], a: false } })).toBe(
      '{"a":{"a":false,"z":[1,"x",{"y":null}]}}',
    );
    expect(canonicalize(Object.create(null) as object)).toBe('{}');
  });
});

describe('pathWithoutQuery', () => {
  it.each([
    ['/repos/a/b/issues?page=2&token=x', '/repos/a/b/issues'],
    ['/a#frag', '/a'],
    ['/plain', '/plain'],
    ['/?', '/'],
  ])('%s -> %s', (input, out) => {
    expect(pathWithoutQuery(input)).toBe(out);
  });
});
