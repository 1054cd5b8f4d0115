/**
 * Issue 6 regressions for the process-wide secret union of proxy/response.ts (every
 * secret injected so far is redacted from every response):
 * - the request's own secret was evicted when the union was full and the request also
 *   brought a new secret (an old bearer token plus a fresh derived one): it then went
 *   through unredacted;
 * - every new derived token recompiled a union of up to 10 000 secrets synchronously:
 *   ~0.5 s of blocked event loop per token at 1 000 secrets, growing linearly, with
 *   memory in gigabytes; a compromised agent renewing its lease in a loop on a
 *   token-exchange service could trigger it at will.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  MAX_REMEMBERED_SECRETS,
  createResponseScrubber,
  unionStats,
} from '../../packages/server/src/proxy/response.js';
import { relayRedacted } from '../../packages/server/src/proxy/relay.js';

async function scrubbed(secrets: string[], body: string, origin?: string): Promise<string> {
  const s = createResponseScrubber({
    headers: {},
    secrets,
    origin,
    removeHeaders: [],
    minSecretLength: 8,
  });
  const out: Buffer[] = [];
  const src = new PassThrough();
  const done = relayRedacted(
    src,
    s.redactor(),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
    () => undefined,
  );
  src.end(body);
  await done;
  return Buffer.concat(out).toString();
}

const token = () => `tok_${randomBytes(18).toString('base64url')}`;

describe('scrubber secret union', () => {
  it("keeps the request's own old secret when a new one arrives with the union full", async () => {
    const old = 'static-bearer-token-0123456789';
    await scrubbed([old], '');
    for (let i = 0; i < MAX_REMEMBERED_SECRETS - 1; i++) await scrubbed([token()], '');
    // `old` is now the least recently added; this request brings it and a fresh token.
    const fresh = token();
    expect(await scrubbed([old, fresh], `a=${old} b=${fresh}`)).toBe('a=[REDACTED] b=[REDACTED]');
  });

  it("another service's recent secret is still redacted", async () => {
    const a = token();
    // An origin of its own: the test before churned through another's secrets.
    await scrubbed([a], '', 'https://shared.example');
    expect(await scrubbed([token()], `x${a}x`, 'https://shared.example')).toBe('x[REDACTED]x');
  });

  it('hundreds of rotating derived tokens cost bounded time per new token', async () => {
    const started = Date.now();
    let slowest = 0;
    for (let i = 0; i < 300; i++) {
      const t0 = performance.now();
      const t = token();
      expect(await scrubbed([t], `<${t}>`)).toBe('<[REDACTED]>');
      slowest = Math.max(slowest, performance.now() - t0);
    }
    // Before: ~470 ms per new token at 1 000 remembered secrets (minutes in total).
    expect(slowest).toBeLessThan(1000);
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 60_000);

  it('issue 10: a secret is redacted from its own origin, not from every upstream', async () => {
    const a = token();
    await scrubbed([a], '', 'https://a.example');
    // Another service on the same origin: that upstream received `a`.
    expect(await scrubbed([token()], `x${a}x`, 'https://a.example')).toBe('x[REDACTED]x');
    // Another origin never received `a`: it is in no matcher there.
    expect(await scrubbed([token()], `x${a}x`, 'https://b.example')).toBe(`x${a}x`);
  });

  it('issue 10: secrets rotating past the bound on one origin never recompile per request', async () => {
    // More agents than the bound, each with its own exchanged token, round robin: an
    // eviction per request, which recompiled every time (30 ms each at 400-byte tokens).
    const tokens = Array.from({ length: MAX_REMEMBERED_SECRETS + 16 }, () => token());
    const origin = 'https://churn.example';
    for (const t of tokens) await scrubbed([t], '', origin);
    const before = unionStats.compiles;
    for (let round = 0; round < 3; round++) {
      for (const t of tokens) expect(await scrubbed([t], `<${t}>`, origin)).toBe('<[REDACTED]>');
    }
    // One matcher per token at most (its own secrets, cached), not one per request.
    expect(unionStats.compiles - before).toBeLessThanOrEqual(tokens.length + 1);
  });
});
