/**
 * Issue 6 fuzzing: the response scrubber as the proxy uses it (proxy/response.ts). Random
 * secrets (token-like, with URL/base64 metacharacters, non-ASCII), echoed by a simulated
 * upstream at random positions in random encodings (plain, base64 and base64url at any
 * alignment inside a larger blob, percent, form, hex, JSON), in a body cut at random
 * chunk boundaries, under a random content coding (identity, gzip, deflate, raw deflate,
 * br), and in header values. Property: no form of any secret reaches the agent, and text
 * around the secrets is relayed unchanged.
 */
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createResponseScrubber } from '../../packages/server/src/proxy/response.js';
import { relayRedacted } from '../../packages/server/src/proxy/relay.js';
import { leaks } from '../security/harness.js';
import { params, TIMEOUT } from './runs.js';

const SECRET_CHARS =
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/+=&%:@!$ \u00e9\u00fc\u4e2d\u{1f511}';
const secret = fc
  .string({ unit: fc.constantFrom(...[...SECRET_CHARS]), minLength: 8, maxLength: 48 })
  // The minimum length applies to the value as it travels: HTTP trims surrounding spaces.
  .filter((s) => Buffer.byteLength(s.trim()) >= 8);
// Filler never contains `[` or `]`, so it cannot complete a secret together with the
// replacement text (see docs/security/threat-model.md, residual risks).
const filler = fc.string({
  unit: fc.constantFrom(...'abcxyz019 \n{}":,<>-_/+=%'.split('')),
  maxLength: 40,
});

const ENCODINGS: Record<string, (s: string) => string> = {
  plain: (s) => s,
  base64: (s) => Buffer.from(s).toString('base64'),
  base64url: (s) => Buffer.from(s).toString('base64url'),
  'base64 in a blob': (s) => Buffer.from(`{"user":"x","token":"${s}","n":1}`).toString('base64'),
  'base64url in a blob, shifted': (s) => Buffer.from(`ab${s}cd`).toString('base64url'),
  'basic header': (s) => `Basic ${Buffer.from(`user:${s}`).toString('base64')}`,
  percent: (s) => encodeURIComponent(s),
  'percent lower': (s) => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
  'percent every byte': (s) =>
    [...Buffer.from(s)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  form: (s) => new URLSearchParams({ t: s }).toString(),
  hex: (s) => Buffer.from(s).toString('hex'),
  HEX: (s) => Buffer.from(s).toString('hex').toUpperCase(),
  json: (s) => JSON.stringify(s),
  'json \\/': (s) => JSON.stringify(s).replace(/\//g, '\\/'),
  'json ascii': (s) =>
    JSON.stringify(s).replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    ),
};
const CODINGS: Record<string, [string | undefined, (b: Buffer) => Buffer]> = {
  identity: [undefined, (b) => b],
  gzip: ['gzip', (b) => gzipSync(b)],
  deflate: ['deflate', (b) => deflateSync(b)],
  'raw deflate': ['deflate', (b) => deflateRawSync(b)],
  br: ['br', (b) => brotliCompressSync(b)],
};

const echo = fc.record({
  secrets: fc.array(secret, { minLength: 1, maxLength: 3 }),
  parts: fc.array(
    fc.record({
      before: filler,
      which: fc.nat(),
      encoding: fc.constantFrom(...Object.keys(ENCODINGS)),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  tail: filler,
  coding: fc.constantFrom(...Object.keys(CODINGS)),
  cuts: fc.array(fc.nat(), { maxLength: 12 }),
});

async function scrub(
  secrets: string[],
  headers: Record<string, string>,
  wire: Buffer,
  cuts: number[],
): Promise<{ headers: Record<string, string | string[]>; body: Buffer }> {
  const s = createResponseScrubber({ headers, secrets, removeHeaders: [], minSecretLength: 8 });
  const source = new PassThrough();
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk);
      cb();
    },
  });
  // The proxy relays an identity body through the redactor directly and a coded one
  // through the decoding scrub stream: the same two paths here.
  const done = s.coded
    ? pipeline(source, s.stream(), sink)
    : relayRedacted(source, s.redactor(), sink, () => undefined);
  const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const p of [...points, wire.length]) {
    if (p > from) source.write(wire.subarray(from, p));
    from = p;
  }
  source.end();
  await done;
  return { headers: s.headers, body: Buffer.concat(out) };
}

describe('fuzz: no secret byte through the scrubber', () => {
  it(
    'random secrets, encodings, positions, chunk boundaries and content codings',
    async () => {
      await fc.assert(
        fc.asyncProperty(echo, async ({ secrets, parts, tail, coding, cuts }) => {
          let text = '';
          // An escape introducer right before an encoded secret can change how its first
          // characters decode (`%` + `ab%2F...`): an honest encoder never leaves one there
          // (it writes `%25`), and the threat model lists it as a residual risk.
          for (const p of parts)
            text +=
              p.before.replace(/%[0-9a-f]?$/, '$& ') +
              ENCODINGS[p.encoding]!(secrets[p.which % secrets.length]!);
          text += tail;
          const [contentEncoding, compress] = CODINGS[coding]!;
          const headers: Record<string, string> = {
            'x-echo': ENCODINGS[parts[0]!.encoding]!(secrets[0]!).replace(/[^\x20-\x7e]/g, ''),
          };
          if (contentEncoding !== undefined) headers['content-encoding'] = contentEncoding;
          const r = await scrub(secrets, headers, compress(Buffer.from(text)), cuts);
          expect(leaks([r.body, JSON.stringify(r.headers)], secrets)).toEqual([]);
          expect(r.headers['content-encoding']).toBeUndefined();
          // Text before the first secret is relayed as is (nothing over-redacted there).
          const first = parts[0]!.before;
          if (!secrets.some((s) => first.includes(s)))
            expect(r.body.subarray(0, Buffer.byteLength(first)).toString()).toBe(first);
        }),
        params(80),
      );
    },
    TIMEOUT,
  );

  it(
    'a body without secrets passes byte for byte, however it is chunked',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          secret,
          fc.uint8Array({ maxLength: 600 }),
          fc.array(fc.nat(), { maxLength: 12 }),
          async (s, bytes, cuts) => {
            const body = Buffer.from(bytes);
            fc.pre(!leaks(body, [s]).length);
            const r = await scrub([s], {}, body, cuts);
            expect(r.body.equals(body)).toBe(true);
          },
        ),
        params(80),
      );
    },
    TIMEOUT,
  );
});
