// relayRedacted: the identity-body relay of the proxy (redaction, back-pressure, failures).
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { compileMatcher } from '../scrub/matcher.js';
import { createRedactor } from '../scrub/redactor.js';
import { secretPatterns } from '../scrub/patterns.js';
import { relayRedacted } from './relay.js';

const SECRET = 'sk_live_relay_secret_0123456789';
const redactor = () => createRedactor(compileMatcher(secretPatterns([SECRET], { minLength: 8 })));

function slowSink(out: Buffer[], delayMs: number): Writable {
  return new Writable({
    highWaterMark: 16,
    write(chunk: Buffer, _e, cb) {
      out.push(chunk);
      setTimeout(cb, delayMs);
    },
  });
}

describe('relayRedacted', () => {
  it('redacts across chunk boundaries, counts what it wrote, and honours back-pressure', async () => {
    const text = `a${SECRET}b`.repeat(50);
    const cut = 7;
    const chunks: Buffer[] = [];
    for (let i = 0; i < text.length; i += cut) chunks.push(Buffer.from(text.slice(i, i + cut)));
    const out: Buffer[] = [];
    let counted = 0;
    const r = redactor();
    await relayRedacted(Readable.from(chunks), r, slowSink(out, 1), (n) => (counted += n));
    const body = Buffer.concat(out).toString();
    expect(body).toBe('a[REDACTED]b'.repeat(50));
    expect(counted).toBe(Buffer.byteLength(body));
    expect(r.count).toBe(50);
  });

  it('rejects with the upstream error and writes nothing after it', async () => {
    const source = new PassThrough();
    const out: Buffer[] = [];
    const done = relayRedacted(source, redactor(), slowSink(out, 0), () => undefined);
    // A complete line is released at once; the unfinished one is held, and lost with the body.
    source.write('a line\npartial ');
    setTimeout(() => source.destroy(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), 5);
    await expect(done).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(Buffer.concat(out).toString()).toBe('a line\n');
  });

  it('when the agent leaves, destroys an idle upstream body and rejects as a premature close', async () => {
    const source = new PassThrough();
    const sink = slowSink([], 0);
    const done = relayRedacted(source, redactor(), sink, () => undefined);
    source.write('first event\n\n');
    await new Promise((r) => setTimeout(r, 5));
    sink.destroy();
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(source.destroyed).toBe(true);
  });

  it('when the agent left before the relay started, destroys the upstream body and rejects', async () => {
    const source = new PassThrough();
    const sink = slowSink([], 0);
    sink.destroy();
    await new Promise((r) => setImmediate(r));
    const done = relayRedacted(source, redactor(), sink, () => undefined);
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(source.destroyed).toBe(true);
  });

  it('a held-back secret prefix at the end of the body is flushed, still redacted', async () => {
    const out: Buffer[] = [];
    await relayRedacted(
      Readable.from([Buffer.from(`x ${SECRET.slice(0, 10)}`), Buffer.from(SECRET.slice(10))]),
      redactor(),
      slowSink(out, 0),
      () => undefined,
    );
    expect(Buffer.concat(out).toString()).toBe('x [REDACTED]');
  });
});
