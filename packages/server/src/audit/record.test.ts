// The record `time` (auditTime) is formatted from a per-second cache (issue 14): it MUST be
// exactly `new Date(ms).toISOString()` for every millisecond, in any order of calls.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { auditTime } from './record.js';

describe('auditTime', () => {
  it('equals toISOString for any millisecond, called in any order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -62_198_755_200_000, max: 253_402_300_799_999 }), {
          minLength: 1,
          maxLength: 20,
        }),
        (times) => {
          for (const ms of times) expect(auditTime(ms)).toBe(new Date(ms).toISOString());
        },
      ),
    );
  });

  it('equals toISOString across a second boundary and for fractional or invalid times', () => {
    const base = Date.UTC(2026, 10, 30, 23, 59, 59, 998);
    for (let ms = base - 3; ms < base + 5; ms++)
      expect(auditTime(ms)).toBe(new Date(ms).toISOString());
    for (const ms of [0, -1, 999, 1000, 1_764_547_200_123.5, 8.64e15, -8.64e15]) {
      expect(auditTime(ms)).toBe(new Date(ms).toISOString());
    }
    expect(() => auditTime(Number.NaN)).toThrow(RangeError);
    expect(() => auditTime(8.64e15 + 1)).toThrow(RangeError);
  });
});
