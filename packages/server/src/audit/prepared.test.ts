// Prepared records (issue 7, performance): the writer canonicalises a record once and
// splices `seq` and `prev_hash` in for the hash. The row MUST be byte-identical to the
// reference construction: canonicalize(record) and hashRecord(record, seq, prevHash).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalize } from './canonical-json.js';
import {
  buildPreparedRow,
  GENESIS_HASH,
  hashRecord,
  prepareRecord,
  type ChainRecord,
} from './chain.js';

const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ unit: 'grapheme' }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ unit: 'grapheme' }), tie('value'), { maxKeys: 4 }),
  ),
})).value;

// Member names around "prev_hash" and "seq" in sort order, to exercise the splice.
const name = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.constantFrom('p', 'prev', 'prev_hasg', 'prev_hashx', 'r', 'se', 'seqq', 'sf', 'z', '', 'A'),
);

const record: fc.Arbitrary<ChainRecord> = fc
  .tuple(fc.dictionary(name, fc.option(json, { nil: undefined }), { maxKeys: 10 }), fc.string())
  .map(([extra, id]) => {
    const r: Record<string, unknown> = {
      ...extra,
      kind: 'request',
      request_id: id,
      time: '2026-01-01T00:00:00.000Z',
    };
    delete r.seq;
    delete r.prev_hash;
    return r as ChainRecord;
  });

describe('prepared audit rows', () => {
  it('text and hash equal the reference construction', () => {
    fc.assert(
      fc.property(
        record,
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }),
        (r, seq, prev) => {
          const row = buildPreparedRow(prepareRecord(r), seq, prev);
          expect(row.record).toBe(canonicalize(r));
          expect(row.hash).toBe(hashRecord(r, seq, prev));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses a record carrying seq or prev_hash, and lone surrogates', () => {
    const base = { kind: 'request', request_id: 'r', time: '2026-01-01T00:00:00.000Z' };
    expect(() => prepareRecord({ ...base, seq: 1 })).toThrow(
      expect.objectContaining({ code: 'internal_error' }),
    );
    expect(() => prepareRecord({ ...base, prev_hash: GENESIS_HASH })).toThrow(
      expect.objectContaining({ code: 'internal_error' }),
    );
    expect(() => prepareRecord({ ...base, intent: 'a\uD800b' })).toThrow(
      expect.objectContaining({ code: 'internal_error' }),
    );
  });
});
