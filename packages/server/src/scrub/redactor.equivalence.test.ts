// The fast paths of the redactor (issue 14, item 5) against the redactor as it was before
// them (`test/reference-redactor.ts`, kept unchanged): for any secrets, any input and any
// chunking, the optimised redactor releases the same bytes after every push, so the same
// release boundaries, and counts the same regions. The crafted cases sit on the edges of
// each skip: an escape introducer at the end of a chunk, a plain span of exactly the
// longest pattern's length and one byte either side, base64 and hex runs one digit shorter
// than the shortest pattern's encoding, and runs that end exactly at a chunk's end.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMatcher, type Matcher } from './matcher.js';
import { secretPatterns } from './patterns.js';
import { createRedactor } from './redactor.js';
import { createReferenceRedactor } from './test/reference-redactor.js';

interface Trace {
  /** The bytes released by each push, then by end(), as hex. */
  releases: string[];
  count: number;
}

function trace(
  create: typeof createRedactor,
  m: Matcher,
  chunks: readonly Uint8Array[],
  maxInput?: number,
): Trace {
  const r = create(m, maxInput === undefined ? {} : { maxInput });
  const releases = chunks.map((c) => r.push(c).toString('hex'));
  releases.push(r.end().toString('hex'));
  return { releases, count: r.count };
}

/** Splits `input` at the given cut points (any order, duplicates and out-of-range ignored). */
function chunked(input: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.filter((c) => c > 0 && c < input.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of at) {
    out.push(input.subarray(from, c));
    from = c;
  }
  out.push(input.subarray(from));
  return out;
}

function expectSame(m: Matcher, input: Buffer, cuts: readonly number[]): void {
  const chunks = chunked(input, cuts);
  const want = trace(createReferenceRedactor, m, chunks);
  const got = trace(createRedactor, m, chunks);
  expect(got).toEqual(want);
  // Header values: the rings are sized for the input.
  const wantAll = trace(createReferenceRedactor, m, [input], input.length);
  expect(trace(createRedactor, m, [input], input.length)).toEqual(wantAll);
}

const percentAll = (s: string) =>
  [...Buffer.from(s)].map((b) => '%' + b.toString(16).padStart(2, '0')).join('');
const percentSome = (s: string) =>
  [...Buffer.from(s)]
    .map((b, i) =>
      i % 3 === 1 ? '%' + b.toString(16).toUpperCase().padStart(2, '0') : String.fromCharCode(b),
    )
    .join('');
const unicode = (s: string) =>
  [...s].map((c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')).join('');
const entities = (s: string) => [...s].map((c) => `&#${c.charCodeAt(0)};`).join('');
const hexSep = (s: string, sep: string) =>
  (Buffer.from(s).toString('hex').match(/../g) ?? []).join(sep);

/** Text pieces around secrets: every family of escape, its near misses, runs, line breaks. */
function piecesFor(secrets: readonly string[]): fc.Arbitrary<string> {
  const s = fc.constantFrom(...secrets);
  return fc.oneof(
    s,
    s.map((x) => x.slice(0, -1)),
    s.map((x) => x.slice(1)),
    s.map((x) => Buffer.from(x).toString('base64')),
    s.map((x) => Buffer.from(x).toString('base64url')),
    s.map((x) => Buffer.from('.' + x).toString('base64')),
    s.map((x) =>
      Buffer.from('..' + x)
        .toString('base64')
        .replace(/\//g, '\\/'),
    ),
    s.map((x) => Buffer.from(x).toString('hex')),
    s.map((x) => Buffer.from(x).toString('hex').toUpperCase()),
    s.map((x) => hexSep(x, ':')),
    s.map((x) => hexSep(x, '%3A')),
    s.map(percentAll),
    // one escaped byte at either end: the escapes view must step the whole plain rest
    s.map((x) => `&#${x.charCodeAt(0)};${x.slice(1)}`),
    s.map((x) => `${x.slice(0, -1)}%${x.charCodeAt(x.length - 1).toString(16)}`),
    s.map(percentSome),
    s.map(unicode),
    s.map(entities),
    s.map((x) =>
      x.replace(/./g, (c, i: number) => (i % 4 === 2 ? `&#x${c.charCodeAt(0).toString(16)};` : c)),
    ),
    fc.constantFrom(
      '%',
      '\\',
      '&',
      '%2',
      '\\u00',
      '&#',
      '&#x4',
      '&amp',
      '&lt;',
      '&plus;',
      '\\/',
      '\\n',
      '%0A',
    ),
    fc.constantFrom('\n', '\r', '\r\n', ' ', ':', '-', '.', '+', '#', ';', '{', '}', '"', '='),
    fc.stringMatching(/^[0-9a-fA-F]{0,24}$/),
    fc.stringMatching(/^[A-Za-z0-9+/_-]{0,40}$/),
    fc.string({ maxLength: 12 }),
    // long stretches with no hex or base64 run, and runs of base64 digits that are no hex:
    // what the strides over runs too short for any pattern jump over
    fc.nat(60).map((n) => '"'.repeat(n)),
    fc.nat(60).map((n) => 'Z'.repeat(n)),
  );
}

/** Secrets with short patterns, so that every skip boundary is reached in short inputs. */
const secretsArb = fc.array(fc.stringMatching(/^[A-Za-z0-9+/=_.~-]{3,14}$/), {
  minLength: 1,
  maxLength: 4,
});

describe('redactor fast paths: byte-identical to the reference, same release boundaries', () => {
  it('random secrets, inputs built from their encodings and near misses, random chunking', () => {
    fc.assert(
      fc.property(
        secretsArb.chain((secrets) =>
          fc.tuple(
            fc.constant(secrets),
            fc.array(piecesFor(secrets), { maxLength: 40 }).map((p) => p.join('')),
            fc.array(fc.nat(600), { maxLength: 12 }),
          ),
        ),
        ([secrets, text, cuts]) => {
          const m = compileMatcher(secrets.map((x) => Buffer.from(x, 'latin1')));
          expectSame(m, Buffer.from(text, 'latin1'), cuts);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('one-byte chunks', () => {
    fc.assert(
      fc.property(
        secretsArb.chain((secrets) =>
          fc.tuple(
            fc.constant(secrets),
            fc.array(piecesFor(secrets), { maxLength: 16 }).map((p) => p.join('')),
          ),
        ),
        ([secrets, text]) => {
          const m = compileMatcher(secrets.map((x) => Buffer.from(x, 'latin1')));
          const input = Buffer.from(text, 'latin1');
          expectSame(
            m,
            input,
            Array.from({ length: input.length }, (_, i) => i),
          );
        },
      ),
      { numRuns: 80 },
    );
  });

  it('random bytes over a realistic secret set (every form of secretPatterns)', () => {
    const m = compileMatcher(secretPatterns(['tok_abc123DEF456ghi', 'p+s/w=rd&1']));
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.nat(400), { maxLength: 6 }),
        (bytes, cuts) => expectSame(m, Buffer.from(bytes), cuts),
      ),
      { numRuns: 300 },
    );
  });

  describe('on the skip boundaries', () => {
    const secret = 'Sk3+t/9Q'; // the shortest, 8 bytes: base64 needs 11 digits, hex 16
    const m = compileMatcher([Buffer.from(secret), Buffer.from('Long-one_12b')]);
    const L = m.maxLength;
    const plain = (n: number) => 'x'.repeat(n);
    const cases: [string, string][] = [];
    for (const d of [-1, 0, 1]) {
      // plain spans of maxLength +-1 between escapes, a secret across the escape
      cases.push([`span ${L + d} then escaped secret`, `%41${plain(L + d)}${percentSome(secret)}`]);
      cases.push([
        `secret ending a span of ${L + d}`,
        `&lt;${plain(L + d - secret.length)}${secret}&gt;`,
      ]);
      cases.push([
        `secret straddling an escape after ${L + d}`,
        `\\n${plain(L + d)}${secret.slice(0, 3)}%${Buffer.from(secret[3]!).toString('hex')}${secret.slice(4)}`,
      ]);
      cases.push([
        `escaped head, plain tail, span ${L + d}`,
        `${plain(L + d)}${unicode(secret.slice(0, 2))}${secret.slice(2)}${plain(L + d)}`,
      ]);
    }
    // The longest pattern, escaped at one end after or before a plain span of about its
    // length: the escapes view's steps and ring must reach exactly maxLength back.
    const long = 'Long-one_12b';
    const pct = (c: string) => `%${c.charCodeAt(0).toString(16)}`;
    for (const d of [-1, 0, 1, 2]) {
      cases.push([
        `longest, escaped head, span ${L + d}`,
        `${plain(L + d)}${pct(long[0]!)}${long.slice(1)}${plain(d + 1)}`,
      ]);
      cases.push([
        `longest, escaped tail, span ${L + d}`,
        `${plain(L + d)}${long.slice(0, -1)}${pct(long.at(-1)!)}`,
      ]);
      cases.push([
        `longest, two escaped tail bytes, span ${L + d}`,
        `&amp;${plain(L + d)}${long.slice(0, -2)}${percentAll(long.slice(-2))}`,
      ]);
    }
    const b64 = Buffer.from(secret).toString('base64'); // 12 digits
    const hex = Buffer.from(secret).toString('hex');
    cases.push(['base64 run one digit short', `"${b64.slice(0, -2)}" ${b64}`]);
    cases.push(['base64 run of exactly the minimum', `"${'A'.repeat(11)}"${b64}`]);
    cases.push([
      'base64 run with an escaped slash',
      `"${Buffer.from('..' + secret)
        .toString('base64')
        .replace(/\//g, '\\/')}"`,
    ]);
    cases.push(['hex run one digit short', `${hex.slice(0, 15)} ${hex} ${hexSep(secret, ':')}`]);
    cases.push(['hex run with percent-escaped separators', `<${hexSep(secret, '%3A')}>`]);
    cases.push(['hex run with three separators', `${hex.slice(0, 4)}:::${hex.slice(4)}`]);
    cases.push(['introducers at every place', `%${secret}\\${secret}&${secret}%`]);
    cases.push([
      'line breaks inside',
      `${secret.slice(0, 4)}\n${secret.slice(4)}\r${percentAll(secret)}\r\n`,
    ]);

    for (const [name, text] of cases) {
      it(name, () => {
        const input = Buffer.from(text, 'latin1');
        // every single cut point, every pair around the interesting middle, and one-byte chunks
        for (let c = 0; c <= input.length; c++) expectSame(m, input, [c]);
        for (let c = 0; c < input.length; c++) expectSame(m, input, [c, c + 1, c + L, c + L + 1]);
        expectSame(
          m,
          input,
          Array.from({ length: input.length }, (_, i) => i),
        );
      });
    }

    it('hex and base64 runs of every length around the shortest encoding, at every offset', () => {
      const minHex = 2 * m.minLength;
      const minB64 = Math.ceil((8 * m.minLength) / 6);
      for (let off = 0; off < minHex + 2; off++) {
        for (const gap of ['"', '""', ' ', 'x']) {
          const shortHex = hex.repeat(2).slice(0, minHex - 1);
          const shortB64 = 'Zq'.repeat(minB64).slice(0, minB64 - 1);
          const text = `${'"'.repeat(off)}${shortHex}${gap}${hex}${gap}${shortB64}${gap}${b64}${'"'.repeat(off)}`;
          const input = Buffer.from(text, 'latin1');
          expectSame(m, input, []);
          expectSame(m, input, [off, off + minHex, input.length - off]);
        }
      }
    });

    it('an introducer as the last byte of a chunk, the escape completed by the next', () => {
      for (const esc of [percentAll(secret), unicode(secret), entities(secret)]) {
        const input = Buffer.from(`${plain(L + 3)}${esc}${plain(2)}`, 'latin1');
        for (let c = 0; c < input.length; c++) {
          if (input[c] === 0x25 || input[c] === 0x5c || input[c] === 0x26) {
            expectSame(m, input, [c + 1]);
          }
        }
      }
    });

    it('the fast path redacts what the reference redacts (sanity)', () => {
      const chunks = [Buffer.from(`${plain(40)}${secret}${plain(40)}%`), Buffer.from(`41${b64}`)];
      const r = createRedactor(m);
      const out = Buffer.concat([...chunks.map((c) => r.push(c)), r.end()]).toString();
      expect(out).toBe(`${plain(40)}[REDACTED]${plain(40)}%41[REDACTED]=`); // the base64 padding is no digit
    });
  });
});
