// Tests of the streaming redactor (issue 10): every encoding an honest upstream produces is
// redacted, whatever the chunking; and what is released when never depends on how far the
// input matched a secret (the prefix oracle).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMatcher, type Matcher } from './matcher.js';
import { secretPatterns } from './patterns.js';
import {
  createRedactor,
  freeWorkspacesForTests,
  holdbackFor,
  redactAll,
  HOLDBACK_SECRET_LENGTH,
} from './redactor.js';
import { createReferenceRedactor } from './test/reference-redactor.js';

const matcherOf = (secrets: string[]): Matcher => compileMatcher(secretPatterns(secrets));

function run(m: Matcher, chunks: Uint8Array[]): { out: Buffer; sizes: number[]; count: number } {
  const r = createRedactor(m);
  const sizes: number[] = [];
  const parts: Buffer[] = [];
  for (const c of chunks) {
    const o = r.push(c);
    sizes.push(o.length);
    parts.push(o);
  }
  parts.push(r.end());
  return { out: Buffer.concat(parts), sizes, count: r.count };
}

function splitAt(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const hexOf = (s: string) => Buffer.from(s).toString('hex');
const percentAll = (s: string, upper: boolean) =>
  [...Buffer.from(s)]
    .map((b) => '%' + (upper ? b.toString(16).toUpperCase() : b.toString(16)).padStart(2, '0'))
    .join('');
const unicodeEscapes = (s: string, upper: boolean) =>
  [...s]
    .map((c) =>
      [...c]
        .map((ch) => {
          let out = '';
          for (let i = 0; i < ch.length; i++) {
            const h = ch.charCodeAt(i).toString(16).padStart(4, '0');
            out += '\\u' + (upper ? h.toUpperCase() : h);
          }
          return out;
        })
        .join(''),
    )
    .join('');
/** What .NET's default JSON encoder does: + < > & ' " (and non-ASCII) as \uXXXX. */
const dotnetJson = (s: string) =>
  JSON.stringify(s)
    .slice(1, -1)
    .replace(/[+<>&'\u0080-\uffff]|\\"/g, (c) => unicodeEscapes(c === '\\"' ? '"' : c, true));
/** Python's urllib.parse.quote: percent-encodes all but letters, digits, _.-~ and '/'. */
const pythonQuote = (s: string) =>
  [...Buffer.from(s)]
    .map((b) =>
      /[A-Za-z0-9_.\-~/]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : '%' + b.toString(16).toUpperCase().padStart(2, '0'),
    )
    .join('');
const htmlDecimal = (s: string) => [...s].map((c) => `&#${c.codePointAt(0)};`).join('');
const htmlHex = (s: string, upper: boolean) =>
  [...s]
    .map((c) => {
      const h = c.codePointAt(0)!.toString(16);
      return `&#x${upper ? h.toUpperCase() : h};`;
    })
    .join('');
/** What an HTML escaper does: only the markup characters become references. */
const htmlMarkup = (s: string) =>
  s.replace(
    /[&<>"'+]/g,
    (c) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '+': '&#x2B;' })[c]!,
  );
const mixedCase = (h: string) => [...h].map((c, i) => (i % 3 === 0 ? c.toUpperCase() : c)).join('');

// Every character class that upstream encoders treat specially, non-ASCII included.
const SECRET = `sk+live<1>&'"/x:ABCdef_0~é`;
const ENCODINGS: Record<string, (s: string) => string> = {
  plain: (s) => s,
  base64: (s) => Buffer.from(s).toString('base64'),
  base64url: (s) => Buffer.from(s).toString('base64url'),
  'base64 in a blob (shift 1)': (s) => Buffer.from(`x${s}yz`).toString('base64'),
  'base64 in a blob (shift 2)': (s) => Buffer.from(`xy${s}z`).toString('base64url'),
  'basic header': (s) => 'Basic ' + Buffer.from(`user:${s}`).toString('base64'),
  'base64 with JSON-escaped slashes': (s) =>
    Buffer.from(`??${s}>>`).toString('base64').replace(/\//g, '\\/'),
  'base64 with percent-encoded digits': (s) =>
    encodeURIComponent(Buffer.from(`??${s}`).toString('base64')),
  'percent (encodeURIComponent)': (s) => encodeURIComponent(s),
  'percent, lower-case hex': (s) =>
    encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()),
  'percent, every byte, upper': (s) => percentAll(s, true),
  'percent, every byte, lower': (s) => percentAll(s, false),
  "partial percent (Python quote keeps '/')": pythonQuote,
  'form-urlencoded': (s) => new URLSearchParams({ t: s }).toString().slice(2),
  hex: (s) => hexOf(s),
  HEX: (s) => hexOf(s).toUpperCase(),
  'hex, mixed case': (s) => mixedCase(hexOf(s)),
  'hex with colons': (s) => hexOf(s).match(/../g)!.join(':'),
  'hex with spaces, upper': (s) => hexOf(s).toUpperCase().match(/../g)!.join(' '),
  'hex dump with a double space every 8 bytes': (s) =>
    hexOf(s)
      .match(/.{1,16}/g)!
      .map((g) => g.match(/../g)!.join(' '))
      .join('  '),
  JSON: (s) => JSON.stringify(s),
  'JSON with \\/': (s) => JSON.stringify(s).replace(/\//g, '\\/'),
  'JSON, .NET escaping (+ < > & \' " as \\u)': (s) => dotnetJson(s),
  'JSON, every char as \\u, lower': (s) => unicodeEscapes(s, false),
  'JSON, every char as \\u, upper': (s) => unicodeEscapes(s, true),
  'HTML decimal references': htmlDecimal,
  'HTML hex references': (s) => htmlHex(s, false),
  'HTML hex references, upper, leading zeros': (s) => htmlHex(s, true).replace(/&#x/g, '&#x00'),
  'HTML markup escaping': htmlMarkup,
  'JavaScript \\x escapes': (s) =>
    [...Buffer.from(s)].map((b) => '\\x' + b.toString(16).padStart(2, '0')).join(''),
};

describe('createRedactor: encodings an honest upstream produces (issue 10)', () => {
  const m = matcherOf([SECRET]);
  it.each(Object.entries(ENCODINGS))('%s', (_name, encode) => {
    const encoded = encode(SECRET);
    const body = Buffer.from(`{"before":1,"echo":"${encoded}","after":2}\n`);
    for (const size of [1, 3, 7, 64, body.length]) {
      const { out, count } = run(m, splitAt(body, size));
      expect(count, `chunks of ${size}`).toBeGreaterThan(0);
      expect(out.toString('latin1')).not.toContain(encoded);
      expect(out.toString()).toMatch(/^\{"before":1,"echo":".*\[REDACTED\].*","after":2\}\n$/s);
    }
  });

  it('a secret stored with surrounding whitespace is redacted as HTTP sends it', () => {
    const m2 = matcherOf(['  tok_0123456789abcdef\n']);
    expect(redactAll(m2, Buffer.from('x tok_0123456789abcdef y')).output.toString()).toBe(
      'x [REDACTED] y',
    );
  });

  it('leaves text without secrets byte for byte, escapes and all', () => {
    const text = Buffer.from('a%41 &amp; \\u0041 &#x41; 41:42 QUJD\n\u00e9 &bogus; %zz \\q');
    expect(redactAll(m, text).output.equals(text)).toBe(true);
  });

  it('merges overlapping matches of several views into one region', () => {
    // The hex of a secret made of hex digits is also the secret's own text in the raw view.
    const m2 = matcherOf(['deadbeefcafe0123', hexOf('deadbeefcafe0123')]);
    const { output, count } = redactAll(m2, Buffer.from(`<${hexOf('deadbeefcafe0123')}>`));
    expect(output.toString()).toBe('<[REDACTED]>');
    expect(count).toBe(1);
  });
});

describe('createRedactor: what the first review found (issue 10)', () => {
  const check = (secret: string, body: string) => {
    const { output, count } = redactAll(matcherOf([secret]), Buffer.from(body));
    expect(count, body).toBeGreaterThan(0);
    return output.toString();
  };

  it('a secret with escape-like text, through an encoder that escapes only some families', () => {
    const a = 'pa%2Fss\\tw0rd!';
    expect(check(a, JSON.stringify({ password: a }))).toBe('{"password":"[REDACTED]"}');
    const b = 'AL|C&z-\\r|iZ}uab';
    expect(check(b, `<td>${b.replace(/&/g, '&amp;')}</td>`)).toBe('<td>[REDACTED]</td>');
    const c = 'ab\\tcd\\"efgh';
    expect(check(c, `<td>${c.replace(/"/g, '&quot;')}</td>`)).toBe('<td>[REDACTED]</td>');
  });

  it('a multi-line secret written with escaped line breaks is redacted whole', () => {
    const s = 'first-line-0123\nsecond-line-4567';
    expect(check(s, JSON.stringify({ key: s }))).toBe('{"key":"[REDACTED]"}');
    expect(check(s, `k=${encodeURIComponent(s)}`)).toBe('k=[REDACTED]');
  });

  it('JavaScript and Python spellings of a non-ASCII secret', () => {
    const s = 'pässwörd-2024';
    expect(check(s, "'p\\xe4ssw\\xf6rd-2024'")).toBe("'[REDACTED]'"); // Python ascii(), JS
    expect(check(s, 'p%E4ssw%F6rd-2024')).toBe('[REDACTED]'); // JavaScript escape()
    expect(check(s, "b'p\\xc3\\xa4ssw\\xc3\\xb6rd-2024'")).toBe("b'[REDACTED]'"); // Python bytes
    const e = 'key\u{1F600}\u{1F600}secret';
    expect(check(e, 'key\\u{1F600}\\u{1F600}secret')).toBe('[REDACTED]'); // ES6
  });

  it('separated hex that a URL or a form encoded', () => {
    const s = 'ghp_hexfingerprint';
    const hex = Buffer.from(s).toString('hex').match(/../g)!;
    expect(check(s, `/cb?fp=${encodeURIComponent(hex.join(':'))}`)).toBe('/cb?fp=[REDACTED]');
    expect(check(s, `/cb?fp=${hex.join('+')}`)).toBe('/cb?fp=[REDACTED]');
  });

  it('a redactor for a short input needs no ring for the longest secret', () => {
    const m = matcherOf(['x'.repeat(30_000)]);
    // 2 x 30,000 + 8 rounds up to 65,536 entries per ring for a body; a header value of
    // 20 bytes needs 64. (Only the result is checked here; the size is what made headers
    // slow when one long secret was in the union.)
    expect(redactAll(m, Buffer.from('content-type: text')).count).toBe(0);
  });
});

describe('createRedactor: nothing about a partial match shows (issue 10)', () => {
  /** The released byte counts the argument in redactor.ts promises, from positions and line breaks only. */
  function expectedSizes(chunks: Buffer[], holdback: number): number[] {
    const sizes: number[] = [];
    let pos = 0;
    let released = 0;
    let lastBreak = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++) if (c[i] === 10 || c[i] === 13) lastBreak = pos + i + 1;
      pos += c.length;
      const limit = Math.max(released, pos - holdback, lastBreak);
      sizes.push(limit - released);
      released = limit;
    }
    return sizes;
  }

  const secretArb = fc.string({
    unit: fc.constantFrom(...'abcdefXYZ0189+/=%&;#\\u"_-'.split('')),
    minLength: 8,
    maxLength: 24,
  });
  const names = Object.keys(ENCODINGS);

  it('releases the same bytes at the same moments for any probe without a complete secret', () => {
    fc.assert(
      fc.property(
        secretArb,
        fc.array(
          fc.record({
            filler: fc.string({
              unit: fc.constantFrom('a', ' ', '\n', '"', '%', 'Z', '0'),
              maxLength: 12,
            }),
            encoding: fc.constantFrom(...names),
            // A strict prefix of an encoded secret: the automaton goes deep, then stops.
            cut: fc.double({ min: 0, max: 0.999, noNaN: true }),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
        (secret, pieces, cuts) => {
          const m = matcherOf([secret]);
          let text = '';
          for (const p of pieces) {
            const enc = ENCODINGS[p.encoding]!(secret);
            text += p.filler + enc.slice(0, Math.floor(enc.length * p.cut));
          }
          const input = Buffer.from(text);
          const chunks: Buffer[] = [];
          for (let i = 0, k = 0; i < input.length; k++) {
            chunks.push(input.subarray(i, i + cuts[k % cuts.length]!));
            i += cuts[k % cuts.length]!;
          }
          const r = run(m, chunks);
          fc.pre(r.count === 0); // a complete secret may show (as [REDACTED])
          expect(r.out.equals(input)).toBe(true);
          expect(r.sizes).toEqual(expectedSizes(chunks, holdbackFor(m.maxLength)));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('gives an agent probing a prefix byte by byte the same chunks for every candidate', () => {
    const secret = 'ghp_Z8q1xW0e7R';
    const m = matcherOf([secret]);
    for (let known = 0; known < secret.length; known++) {
      const observations = new Set<string>();
      for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_') {
        // The complete secret shows as [REDACTED]: that is a full guess, not a prefix.
        if (secret.slice(0, known) + c === secret) continue;
        const probe = Buffer.from(`data: ${secret.slice(0, known)}${c}`);
        // As an SSE event, as a body of its own, and cut into two upstream writes.
        const observed = [
          run(m, [Buffer.concat([probe, Buffer.from('\n\n')])]).sizes,
          run(m, [probe]).sizes,
          run(m, [probe.subarray(0, 5), probe.subarray(5)]).sizes,
        ];
        observations.add(JSON.stringify(observed));
      }
      expect(observations.size, `prefix of ${known} bytes`).toBe(1);
    }
  });

  it('releases a complete line at once (server-sent events flow), the rest at the end', () => {
    const m = matcherOf(['0123456789abcdef']);
    const r = createRedactor(m);
    expect(r.push(Buffer.from('data: hello\n\n')).toString()).toBe('data: hello\n\n');
    expect(r.push(Buffer.from('data: 0123')).toString()).toBe('');
    expect(r.push(Buffer.from('456789abcdef tail\n')).toString()).toBe('data: [REDACTED] tail\n');
    expect(r.push(Buffer.from('0123456789abcde')).length).toBe(0);
    expect(r.end().toString()).toBe('0123456789abcde');
    expect(r.count).toBe(1);
  });

  it('holds back a constant that does not reveal the length of the secrets', () => {
    expect(holdbackFor(matcherOf(['short-secret']).maxLength)).toBe(
      holdbackFor(matcherOf(['a-much-longer-secret-'.repeat(20)]).maxLength),
    );
    expect(holdbackFor(HOLDBACK_SECRET_LENGTH + 1)).toBeGreaterThan(holdbackFor(1));
    const m = matcherOf(['0123456789abcdef']);
    const holdback = holdbackFor(m.maxLength);
    const r = createRedactor(m);
    expect(r.push(Buffer.alloc(holdback, 'x')).length).toBe(0);
    expect(r.push(Buffer.alloc(10, 'x')).length).toBe(10);
    expect(r.end().length).toBe(holdback);
  });

  it('releases the same way when there is no secret at all (nothing tells that none is in use)', () => {
    const none = createRedactor(compileMatcher([]));
    const some = createRedactor(matcherOf(['0123456789abcdef']));
    for (const chunk of ['hello', ' world\n', 'x'.repeat(70_000), 'tail']) {
      expect(none.push(Buffer.from(chunk)).length).toBe(some.push(Buffer.from(chunk)).length);
    }
    expect(none.end().length).toBe(some.end().length);
  });
});

describe('createRedactor: the raw view agrees with a naive reference', () => {
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
    // Characters that are no hex or base64 digit and start no escape: only the raw view sees them.
    const ab = fc.string({ unit: fc.constantFrom('!', '(', ')'), minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        fc.array(ab, { minLength: 1, maxLength: 5 }),
        fc.string({ unit: fc.constantFrom('!', '(', ')', '~'), maxLength: 80 }),
        fc.integer({ min: 1, max: 9 }),
        (patterns, text, size) => {
          const r = createRedactor(compileMatcher(patterns.map((p) => Buffer.from(p))), '#');
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

describe('createRedactor: pooled workspaces carry nothing between responses (issue 14)', () => {
  const secret = 'pool-secret-0123456789abcdef';
  const m = matcherOf([secret]);
  // A match, a partial match at the end, a pending escape, open base64 and hex runs: every
  // ring and decoder buffer of the workspace is written.
  const body = Buffer.from(
    `a ${secret} b ${Buffer.from(secret).toString('base64')} ` +
      `${Buffer.from(secret).toString('hex')} %70%6F\\u0070 ${secret.slice(0, -3)}%4`,
  );
  const allZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

  it('a workspace is zeroed when its redactor ends, and the next redactor takes it', () => {
    const r = createRedactor(m);
    r.push(body);
    expect(r.count).toBe(0); // all of it still held back
    const before = freeWorkspacesForTests(m).length;
    r.end();
    const free = freeWorkspacesForTests(m);
    expect(free.length).toBe(before + 1);
    expect(r.count).toBeGreaterThanOrEqual(3);
    for (const bytes of free) expect(allZero(bytes)).toBe(true);
    r.end(); // a second end gives nothing back twice
    expect(freeWorkspacesForTests(m).length).toBe(before + 1);
    const next = createRedactor(m);
    expect(freeWorkspacesForTests(m).length).toBe(before);
    next.end();
  });

  it('redactors alive at once hold distinct workspaces', () => {
    const before = freeWorkspacesForTests(m).length;
    const live = Array.from({ length: before + 3 }, () => createRedactor(m));
    expect(freeWorkspacesForTests(m).length).toBe(0);
    for (const r of live) r.end();
    expect(freeWorkspacesForTests(m).length).toBe(before + 3);
  });

  it('interleaved and reused redactors release what a fresh reference releases', () => {
    const cases = [body, Buffer.from(`${secret}\n%7`), Buffer.from('x'.repeat(300) + secret)];
    for (let round = 0; round < 20; round++) {
      // Two responses at once, chunk by chunk, each taking a workspace another one used.
      const [a, b] = [cases[round % 3]!, cases[(round + 1) % 3]!];
      const ra = createRedactor(m);
      const rb = createRedactor(m);
      const wa = createReferenceRedactor(m);
      const wb = createReferenceRedactor(m);
      for (let i = 0; i < Math.max(a.length, b.length); i += 7) {
        const ca = a.subarray(i, i + 7);
        const cb = b.subarray(i, i + 7);
        if (ca.length > 0) expect(ra.push(ca)).toEqual(wa.push(ca));
        if (cb.length > 0) expect(rb.push(cb)).toEqual(wb.push(cb));
      }
      expect(ra.end()).toEqual(wa.end());
      expect(rb.end()).toEqual(wb.end());
      expect([ra.count, rb.count]).toEqual([wa.count, wb.count]);
    }
  });
});

describe('redactAll: an input shorter than the shortest pattern (issue 14)', () => {
  it('is released as it is, and one byte longer is scanned', () => {
    const secret = 'short-skip-secret';
    const m = matcherOf([secret]);
    const short = Buffer.from(secret.slice(0, -1));
    expect(short.length).toBe(m.minLength - 1);
    expect(redactAll(m, short)).toEqual({ output: short, count: 0 });
    expect(redactAll(m, Buffer.from(secret))).toEqual({
      output: Buffer.from('[REDACTED]'),
      count: 1,
    });
  });
});
