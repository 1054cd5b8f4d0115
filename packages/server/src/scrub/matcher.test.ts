// Tests of the pattern automaton and the secret patterns: the dense automaton agrees with
// a naive search, and a secret's patterns are what the redactor's views need.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMatcher, type Matcher } from './matcher.js';
import { isRedactable, MIN_SECRET_LENGTH, patternsOf, secretPatterns } from './patterns.js';

/** Every end position (exclusive) and length of the longest match ending there, by the automaton. */
function matches(m: Matcher, text: string): [number, number][] {
  const found: [number, number][] = [];
  let s = 0;
  for (let i = 0; i < text.length; i++) {
    s = m.next[s * m.width + m.classOf[text.charCodeAt(i)]!]!;
    if (m.out[s]! > 0) found.push([i + 1, m.out[s]!]);
  }
  return found;
}

/** The same, through `step` (premultiplied states, a pattern's end in the sign). */
function stepMatches(m: Matcher, text: string): [number, number][] {
  const found: [number, number][] = [];
  let s = 0;
  for (let i = 0; i < text.length; i++) {
    s = m.step[s + m.classOf[text.charCodeAt(i)]!]!;
    if (s < 0) {
      s = ~s;
      found.push([i + 1, m.out[s / m.width]!]);
    }
  }
  return found;
}

function naive(patterns: string[], text: string): [number, number][] {
  const found: [number, number][] = [];
  for (let i = 1; i <= text.length; i++) {
    const longest = Math.max(
      0,
      ...patterns.filter((p) => text.slice(0, i).endsWith(p)).map((p) => p.length),
    );
    if (longest > 0) found.push([i, longest]);
  }
  return found;
}

describe('compileMatcher', () => {
  it('finds the longest pattern ending at every position, like a naive search', () => {
    const ab = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        fc.array(ab, { minLength: 1, maxLength: 6 }),
        fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'd'), maxLength: 80 }),
        (patterns, text) => {
          const m = compileMatcher(patterns.map((p) => Buffer.from(p)));
          expect(matches(m, text)).toEqual(naive(patterns, text));
          expect(stepMatches(m, text)).toEqual(naive(patterns, text));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('gives every byte outside the patterns the same column, and counts distinct patterns', () => {
    const m = compileMatcher([Buffer.from('abca'), Buffer.from('abca'), Buffer.alloc(0)]);
    expect(m.size).toBe(1);
    expect(m.maxLength).toBe(4);
    expect(m.width).toBe(4); // other, a, b, c
    expect(m.classOf['z'.charCodeAt(0)]).toBe(0);
    expect(m.next.length).toBe(5 * m.width); // root + 4 nodes
    expect(compileMatcher([]).maxLength).toBe(0);
  });
});

describe('patternsOf', () => {
  it('trims the whitespace HTTP trims, and refuses what is too short', () => {
    expect(patternsOf('  tok_0123456789\r\n').map(String)).toEqual(['tok_0123456789']);
    expect(() => patternsOf('   short\n')).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
    expect(isRedactable('   short\n')).toBe(false);
    expect(isRedactable('tok_0123456789')).toBe(true);
    expect(MIN_SECRET_LENGTH).toBe(8);
  });

  it('matches a multi-line secret whole (escaped) and line by line (raw)', () => {
    const pem = '-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFS\nVFVW\n-----END KEY-----\n';
    const p = patternsOf(pem).map(String);
    expect(p).toContain(pem.trim());
    expect(p).toContain('QUJDREVGR0hJSktMTU5PUFFS');
    expect(p).toContain('-----BEGIN KEY-----');
    expect(p).not.toContain('VFVW'); // shorter than the minimum
  });

  it('adds the readings of a secret with escape-like text after a partial encoding (issue 10)', () => {
    const p = patternsOf('pa%2Fss\\tw0rd!').map(String);
    expect(p).toContain('pa%2Fss\\tw0rd!'); // as it is
    expect(p).toContain('pa/ss\tw0rd!'); // every family decoded
    expect(p).toContain('pa%2Fss\tw0rd!'); // JSON-escaped, then read back: only `\` decoded
    expect(p).toContain('pa/ss\\tw0rd!'); // only `%` decoded
  });

  it('adds the Latin-1 and byte-wise readings of a non-ASCII secret (issue 10)', () => {
    const p = patternsOf('pässwörd-2024').map((b) => b.toString('latin1'));
    expect(p).toContain(Buffer.from('pässwörd-2024', 'utf8').toString('latin1'));
    expect(p).toContain(Buffer.from('pässwörd-2024', 'latin1').toString('latin1'));
    expect(p).toContain(
      Buffer.from(Buffer.from('pässwörd-2024', 'utf8').toString('latin1'), 'utf8').toString(
        'latin1',
      ),
    );
  });

  it('adds the form-encoded spelling of a secret with spaces', () => {
    expect(patternsOf('pass word 123').map(String)).toEqual(['pass word 123', 'pass+word+123']);
  });

  it('secretPatterns deduplicates and skips empty values', () => {
    expect(secretPatterns(['abcdefgh-1234', '', 'abcdefgh-1234']).map(String)).toEqual([
      'abcdefgh-1234',
    ]);
    expect(() => secretPatterns(['abcdefgh-1234', 'tiny'])).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
  });
});
