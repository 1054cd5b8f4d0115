// The intent glob of sub-leases (spec §12.5): table-driven, and linear on hostile input.
import { describe, expect, it } from 'vitest';
import { intentMatches } from './delegation.js';

describe('intentMatches', () => {
  it.each([
    ['triage *', 'triage issue 7', true],
    ['triage *', 'TRIAGE issue 7', true],
    ['triage *', 'triage ', true],
    ['triage *', 'triage', false],
    ['triage *', 'please triage x', false],
    ['*', '', true],
    ['', '', true],
    ['', 'x', false],
    ['a*b*c', 'aXXbYYc', true],
    ['a*b*c', 'aXXbYY', false],
    ['read * of *', 'read issue 3 of acme/app', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['?', 'x', false], // only `*` is special
  ])('%j against %j -> %s', (pattern, intent, expected) => {
    expect(intentMatches(pattern, intent)).toBe(expected);
  });

  it('stays linear on the input that makes a backtracking matcher exponential', () => {
    // With a regular expression, (a*)*b against a long run of a's never finishes; the
    // two-pointer glob answers at once. The assertion is the answer, not a timing.
    const pattern = '*a*a*a*a*a*a*a*a*a*a*a*a*b';
    expect(intentMatches(pattern, 'a'.repeat(512))).toBe(false);
    expect(intentMatches(pattern, `${'a'.repeat(511)}b`)).toBe(true);
  });
});
