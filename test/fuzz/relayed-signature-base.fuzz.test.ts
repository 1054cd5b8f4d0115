/**
 * The signature base of a relayed upstream answer (spec §10.4 [RESP-RELAYED], issue 14):
 * the proxy builds it by concatenation for the fixed shape it writes. Random inputs
 * (status, method, request target, request id, Content-Type, created, nonces, kid), plain
 * and hostile (quotes, backslashes, line breaks, whitespace around values, non-ASCII,
 * fragments, targets that are not origin-form, out-of-range integers).
 * Property: whenever the fast path gives a base, the generic path (component derivation and
 * structured-field serialisation) gives exactly the same base and `@signature-params`; the
 * function the proxy calls always equals the generic path, or fails with the same code; and
 * the proxy's own shape always takes the fast path.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import {
  fastRelayedSignatureBase,
  genericRelayedSignatureBase,
  relayedResponseSignatureBase,
  type RelayedSignatureInput,
} from '../../packages/protocol/src/response-signature.js';
import { params, TIMEOUT } from './runs.js';

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const token = (min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...B64URL.split('')), minLength: min, maxLength: max });
// Characters that make the generic path escape, trim, refuse or split differently.
const hostile = fc.string({
  unit: fc.constantFrom(
    'a',
    'Z',
    '0',
    '/',
    '?',
    '#',
    '=',
    '&',
    '%',
    ';',
    ',',
    '"',
    '\\',
    ' ',
    '\t',
    '\r',
    '\n',
    '\u0000',
    '\u007f',
    'é',
    '\u2028',
    '😀',
  ),
  maxLength: 24,
});
const segment = fc.string({
  unit: fc.constantFrom(..."abcXYZ019-._~%!$&'()*+,;=:@".split('')),
  maxLength: 8,
});
const plainTarget = fc
  .tuple(
    fc.array(segment, { minLength: 1, maxLength: 4 }),
    fc.option(fc.string({ unit: fc.constantFrom(...'ab=&1%/?'.split('')), maxLength: 12 })),
  )
  .map(([segs, q]) => `/${segs.join('/')}${q === null ? '' : `?${q}`}`);
const contentType = fc.constantFrom(
  'application/json',
  'text/plain; charset=utf-8',
  'application/problem+json',
  'text/event-stream',
  'application/json, text/plain',
  '',
);

const plain: fc.Arbitrary<RelayedSignatureInput> = fc.record({
  status: fc.integer({ min: 100, max: 599 }),
  method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'),
  target: plainTarget,
  requestId: token(22, 22),
  contentType: fc.option(contentType, { nil: undefined }),
  created: fc.integer({ min: 0, max: 4_000_000_000 }),
  nonce: token(22, 22),
  kid: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'.split('')), minLength: 24 }),
  requestNonce: fc.option(token(16, 43), { nil: undefined }),
});

const anyInput: fc.Arbitrary<RelayedSignatureInput> = fc.record({
  status: fc.oneof(
    fc.integer({ min: 100, max: 599 }),
    fc.constantFrom(0, 99, 999, 1000, -200, 200.5, Number.NaN),
  ),
  method: fc.oneof(fc.constantFrom('GET', 'POST', ''), hostile),
  target: fc.oneof(
    plainTarget,
    hostile,
    hostile.map((s) => `/${s}`),
  ),
  requestId: fc.oneof(token(0, 22), hostile),
  contentType: fc.option(fc.oneof(contentType, hostile), { nil: undefined }),
  created: fc.oneof(
    fc.integer({ min: 0, max: 4_000_000_000 }),
    fc.constantFrom(-1, 1.5, 999_999_999_999_939, 999_999_999_999_940, Number.MAX_SAFE_INTEGER),
  ),
  nonce: fc.oneof(token(22, 22), hostile),
  kid: fc.oneof(token(0, 24), hostile),
  requestNonce: fc.option(fc.oneof(token(16, 43), hostile), { nil: undefined }),
});

type Outcome = { base: string; signatureParams: string } | { code: string };
const outcome = (f: () => { base: string; signatureParams: string }): Outcome => {
  try {
    return f();
  } catch (e) {
    if (!isNexusError(e)) throw e;
    return { code: e.code };
  }
};

describe('relayed answer signature base: fast path = generic path (issue 14, §10.4)', () => {
  it(
    'a fast base is always the generic base; the proxy call always equals the generic one',
    () => {
      fc.assert(
        fc.property(fc.oneof(plain, anyInput), (input) => {
          const generic = outcome(() => genericRelayedSignatureBase(input));
          const fast = fastRelayedSignatureBase(input);
          if (fast !== undefined) expect(generic).toEqual(fast);
          expect(outcome(() => relayedResponseSignatureBase(input))).toEqual(generic);
        }),
        params(1500),
      );
    },
    TIMEOUT,
  );

  it(
    "the proxy's own shape takes the fast path",
    () => {
      fc.assert(
        fc.property(plain, (input) => {
          expect(fastRelayedSignatureBase(input)).toBeDefined();
        }),
        params(500),
      );
    },
    TIMEOUT,
  );

  it('covers Content-Type only when the answer has one, in the spec order', () => {
    const input: RelayedSignatureInput = {
      status: 200,
      method: 'GET',
      target: '/echo/items?page=1',
      requestId: 'req-1',
      contentType: 'application/json',
      created: 1_785_000_000,
      nonce: 'n1',
      kid: 'k1',
      requestNonce: 'rn',
    };
    expect(fastRelayedSignatureBase(input)?.base).toBe(
      [
        '"@status": 200',
        '"@method";req: GET',
        '"@path";req: /echo/items',
        '"@query";req: ?page=1',
        '"nexus-request-id": req-1',
        '"nexus-origin": upstream',
        '"content-type": application/json',
        '"@signature-params": ("@status" "@method";req "@path";req "@query";req ' +
          '"nexus-request-id" "nexus-origin" "content-type");created=1785000000;' +
          'expires=1785000060;nonce="n1";keyid="k1";tag="nexus-response";wimse-req-nonce="rn"',
      ].join('\n'),
    );
    const bare = fastRelayedSignatureBase({ ...input, contentType: undefined })!;
    expect(bare.base).not.toContain('content-type');
    expect(bare).toEqual(genericRelayedSignatureBase({ ...input, contentType: undefined }));
  });
});
