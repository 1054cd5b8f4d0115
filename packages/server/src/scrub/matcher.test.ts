// Tests of the encodings and the streaming redactor: table-driven per encoding, and a
// property test over random secrets, encodings, positions and chunkings.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodingsOf, secretsFor, MIN_SECRET_LENGTH } from './encodings.js';
import { compileMatcher, createRedactor, redactAll, scanAscii } from './matcher.js';

const SECRET = 'user:pa/ss+wörd€"\\x';

function run(patterns: Buffer[], chunks: Buffer[]): { out: Buffer; count: number } {
  const r = createRedactor(patterns);
  const parts = chunks.map((c) => r.push(c));
  parts.push(r.end());
  return { out: Buffer.concat(parts), count: r.count };
}

function includes(haystack: Buffer, needle: Uint8Array): boolean {
  return haystack.indexOf(needle) !== -1;
}

describe('encodingsOf', () => {
  const s = Buffer.from(SECRET, 'utf8');
  const forms: [string, string][] = [
    ['plain', SECRET],
    ['base64 std', s.toString('base64').replace(/=+$/, '').slice(0, -1)],
    ['base64url', s.toString('base64url').slice(0, -1)],
    ['encodeURIComponent', encodeURIComponent(SECRET)],
    [
      'encodeURIComponent lower hex',
      encodeURIComponent(SECRET).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    ],
    ['form-urlencoded', new URLSearchParams({ a: SECRET }).toString().slice(2)],
    [
      'percent every byte upper',
      [...s].map((b) => '%' + b.toString(16).padStart(2, '0').toUpperCase()).join(''),
    ],
    ['percent every byte lower', [...s].map((b) => '%' + b.toString(16).padStart(2, '0')).join('')],
    ['hex lower', s.toString('hex')],
    ['hex upper', s.toString('hex').toUpperCase()],
    ['json', JSON.stringify(SECRET).slice(1, -1)],
    ['json escaped slash', JSON.stringify(SECRET).slice(1, -1).replace(/\//g, '\\/')],
    [
      'json ascii',
      JSON.stringify(SECRET)
        .slice(1, -1)
        .replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')),
    ],
    [
      'json ascii upper',
      JSON.stringify(SECRET)
        .slice(1, -1)
        .replace(
          /[\u0080-\uffff]/g,
          (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase(),
        ),
    ],
  ];
  const patterns = encodingsOf(SECRET);
  it.each(forms)('redacts the %s form inside other text', (_name, form) => {
    const input = Buffer.from(`before ${form} after`, 'utf8');
    const { output, count } = redactAll(patterns, input);
    expect(count).toBeGreaterThanOrEqual(1);
    expect(output.toString('utf8')).toMatch(/^before .*\[REDACTED\].* after$/);
    for (const p of patterns) expect(includes(output, p)).toBe(false);
  });

  it.each([0, 1, 2, 3, 4, 5])(
    'finds base64 of the secret inside Basic auth at prefix length %i',
    (n) => {
      const user = 'u'.repeat(n);
      const header = Buffer.from(`${user}:${SECRET}`).toString('base64');
      const urlForm = Buffer.from(`${user}:${SECRET}`).toString('base64url');
      for (const h of [header, urlForm]) {
        const { output, count } = redactAll(patterns, Buffer.from(`Basic ${h}`));
        expect(count).toBe(1);
        expect(output.toString()).toContain('[REDACTED]');
      }
    },
  );

  it('refuses secrets shorter than the minimum with validation_failed', () => {
    expect(MIN_SECRET_LENGTH).toBe(8);
    expect(() => encodingsOf('short')).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
    expect(() => encodingsOf('')).toThrow(expect.objectContaining({ code: 'validation_failed' }));
    expect(() => encodingsOf('short', { minLength: 4 })).not.toThrow();
  });

  it('accepts raw bytes and emits only byte forms that make sense', () => {
    const bytes = Uint8Array.from([0xff, 0x00, 0xfe, 0x01, 0x80, 0x7f, 0x10, 0x20, 0x30]);
    const p = encodingsOf(bytes);
    expect(p.some((x) => x.equals(Buffer.from(bytes)))).toBe(true);
    expect(p.some((x) => x.toString() === Buffer.from(bytes).toString('hex'))).toBe(true);
  });

  it('secretsFor deduplicates and skips empty values', () => {
    const a = secretsFor(['abcdefgh-1234', 'abcdefgh-1234', '']);
    const keys = a.map((b) => b.toString('latin1'));
    expect(new Set(keys).size).toBe(keys.length);
    expect(a.length).toBe(encodingsOf('abcdefgh-1234').length);
    expect(() => secretsFor(['abcdefgh-1234', 'tiny'])).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
  });
});

describe('createRedactor', () => {
  it('redacts overlapping and nested matches as one region', () => {
    const p = [Buffer.from('bcde'), Buffer.from('abc'), Buffer.from('cdefg'), Buffer.from('zz')];
    expect(redactAll(p, Buffer.from('xabcdefgy')).output.toString()).toBe('x[REDACTED]y');
    expect(redactAll(p, Buffer.from('zzz')).output.toString()).toBe('[REDACTED]');
    expect(
      redactAll([Buffer.from('bc'), Buffer.from('abcd')], Buffer.from('abcd')).output.toString(),
    ).toBe('[REDACTED]');
  });

  it('passes text through unchanged with no patterns', () => {
    expect(redactAll([], Buffer.from('hello')).output.toString()).toBe('hello');
  });

  it('holds back only a possible pattern prefix and at most longest - 1 bytes', () => {
    const secret = Buffer.from('0123456789abcdef');
    const r = createRedactor([secret]);
    expect(r.push(Buffer.from('data: hello\n\n')).toString()).toBe('data: hello\n\n');
    expect(r.push(Buffer.from('x 0123')).toString()).toBe('x ');
    expect(r.push(Buffer.from('456789abcde')).toString()).toBe('');
    expect(r.push(Buffer.from('f tail')).toString()).toBe('[REDACTED] tail');
    expect(r.push(Buffer.from('0123456789abcde')).length).toBe(0);
    expect(r.end().toString()).toBe('0123456789abcde');
    expect(r.count).toBe(1);
  });

  it('redacts a secret split at every position', () => {
    const secret = 'sk_live_0123456789';
    const patterns = encodingsOf(secret);
    const text = `{"token":"${secret}","b64":"${Buffer.from(secret).toString('base64')}"}`;
    const input = Buffer.from(text);
    for (let i = 1; i < input.length; i++) {
      const { out } = run(patterns, [input.subarray(0, i), input.subarray(i)]);
      expect(out.toString()).toBe('{"token":"[REDACTED]","b64":"[REDACTED]"}');
    }
    // One byte at a time.
    const { out } = run(
      patterns,
      [...input].map((b) => Buffer.of(b)),
    );
    expect(out.toString()).toBe('{"token":"[REDACTED]","b64":"[REDACTED]"}');
  });

  it('compiles once and is reusable', () => {
    const m = compileMatcher(secretsFor(['abcdefgh12']));
    expect(m.size).toBeGreaterThan(3);
    expect(redactAll(m, Buffer.from('abcdefgh12')).output.toString()).toBe('[REDACTED]');
    expect(redactAll(m, Buffer.from('abcdefgh12')).count).toBe(1);
  });
});

describe('property: no pattern survives, other text is unchanged', () => {
  const encoders: ((s: string) => string)[] = [
    (s) => s,
    (s) => Buffer.from(s).toString('base64'),
    (s) => Buffer.from(s).toString('base64url'),
    (s) => encodeURIComponent(s),
    (s) => Buffer.from(s).toString('hex'),
    (s) => Buffer.from(s).toString('hex').toUpperCase(),
    (s) => JSON.stringify(s).slice(1, -1),
    (s) => 'Basic ' + Buffer.from('user:' + s).toString('base64'),
  ];
  // Filler from an alphabet disjoint from the secrets' alphabet, so it cannot form a pattern.
  const filler = fc.string({
    unit: fc.constantFrom(' ', '\n', '.', '!', '~', '(', ')', '|'),
    maxLength: 40,
  });
  const secretArb = fc.string({
    unit: fc.constantFrom(
      ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_/+:=é€'.split(''),
    ),
    minLength: 8,
    maxLength: 40,
  });

  it('holds for random secrets, encodings, positions and chunking', () => {
    fc.assert(
      fc.property(
        fc.array(secretArb, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(filler, fc.nat(), fc.nat(encoders.length - 1)), {
          minLength: 1,
          maxLength: 6,
        }),
        filler,
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
        (secrets, pieces, tailText, sizes) => {
          const patterns = secretsFor(secrets);
          let text = '';
          for (const [pre, which, enc] of pieces) {
            text += pre + encoders[enc]!(secrets[which % secrets.length]!);
          }
          text += tailText;
          const input = Buffer.from(text);
          const chunks: Buffer[] = [];
          for (let i = 0, k = 0; i < input.length; k++) {
            const n = sizes[k % sizes.length]!;
            chunks.push(input.subarray(i, i + n));
            i += n;
          }
          const { out, count } = run(patterns, chunks);
          for (const p of patterns) expect(includes(out, p)).toBe(false);
          expect(count).toBeGreaterThanOrEqual(1);
          // Every piece of non-secret text survives intact and in order.
          const outText = out.toString('utf8');
          let at = 0;
          for (const piece of [...pieces.map(([pre]) => pre), tailText]) {
            const found = outText.indexOf(piece, at);
            expect(found).toBeGreaterThanOrEqual(0);
            at = found + piece.length;
          }
          // Filler-only text is unchanged.
          expect(run(patterns, [Buffer.from(tailText)]).out.toString()).toBe(tailText);
          // Chunking does not change the result.
          expect(out.equals(redactAll(patterns, input).output)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('property: agrees with a naive reference on a small alphabet', () => {
  /** Every occurrence of every pattern, overlapping intervals merged, each replaced once. */
  function naive(patterns: string[], text: string): string {
    const spans: [number, number][] = [];
    for (const p of patterns) {
      for (let i = text.indexOf(p); i !== -1; i = text.indexOf(p, i + 1))
        spans.push([i, i + p.length]);
    }
    spans.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const [s, e] of spans) {
      const last = merged.at(-1);
      if (last !== undefined && s < last[1]) last[1] = Math.max(last[1], e);
      else merged.push([s, e]);
    }
    let out = '';
    let cur = 0;
    for (const [s, e] of merged) {
      out += text.slice(cur, s) + '#';
      cur = e;
    }
    return out + text.slice(cur);
  }

  it('holds for random patterns, text and chunking', () => {
    const ab = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        fc.array(ab, { minLength: 1, maxLength: 5 }),
        fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'd'), maxLength: 80 }),
        fc.integer({ min: 1, max: 9 }),
        (patterns, text, size) => {
          const r = createRedactor(
            patterns.map((p) => Buffer.from(p)),
            '#',
          );
          const input = Buffer.from(text);
          const parts: Buffer[] = [];
          for (let i = 0; i < input.length; i += size)
            parts.push(r.push(input.subarray(i, i + size)));
          parts.push(r.end());
          expect(Buffer.concat(parts).toString()).toBe(naive(patterns, text));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('scanAscii', () => {
  it('agrees with the redactor on ASCII text, and defers non-ASCII text', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({
            unit: fc.constantFrom('a', 'b', 'c', 'X', '=', '%'),
            minLength: 1,
            maxLength: 6,
          }),
          {
            maxLength: 4,
          },
        ),
        fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'X', '=', '%', ' '), maxLength: 40 }),
        (secrets, text) => {
          const m = compileMatcher(secrets.map((x) => Buffer.from(x)));
          const r = createRedactor(m);
          r.push(Buffer.from(text));
          r.end();
          return scanAscii(m, text) === (r.count > 0 ? 'match' : 'clean');
        },
      ),
      { numRuns: 500 },
    );
    const m = compileMatcher([Buffer.from('secret')]);
    expect(scanAscii(m, 'no secret here')).toBe('match');
    expect(scanAscii(m, 'nothing')).toBe('clean');
    expect(scanAscii(m, 'caf\u00e9 secret')).toBe('non-ascii');
    expect(scanAscii(compileMatcher([]), 'anything')).toBe('clean');
  });
});
