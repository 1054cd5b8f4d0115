// readBody over a real loopback HTTP connection: the body read once into one buffer, the
// limit enforced while reading (issue 14 step 5: no unbounded buffering), and asBuffer,
// which forwards the verified bytes without a copy.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { asBuffer, readBody } from './read-body.js';

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/**
 * Starts a server that hands each request to `onRequest`, then sends one POST whose body
 * is `chunks`, written one by one with a pause between them (so they arrive as separate
 * reads). Resolves with what `onRequest` resolved with, and the body bytes the client
 * managed to write before the server answered.
 */
async function exchange<T>(
  chunks: Buffer[],
  headers: Record<string, string>,
  onRequest: (req: IncomingMessage) => Promise<T>,
): Promise<{ result: T; written: number }> {
  let result: Promise<T> | undefined;
  server = createServer((req, res) => {
    result = onRequest(req);
    // Answered either way; the connection closes so an unread remainder is dropped.
    void result.finally(() => res.writeHead(200, { connection: 'close' }).end('ok'));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  let written = 0;
  await new Promise<void>((resolve) => {
    let answered = false;
    const req = request({ host: '127.0.0.1', port, method: 'POST', headers }, (res) => {
      answered = true;
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', () => resolve());
    let i = 0;
    const next = () => {
      if (answered || req.destroyed) return;
      if (i === chunks.length) {
        req.end();
        return;
      }
      written += chunks[i]!.length;
      req.write(chunks[i++]);
      setTimeout(next, 10);
    };
    next();
  });
  return { result: await (result as Promise<T>), written };
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => 'read',
    (e: { code?: string }) => e.code,
  );

describe('readBody', () => {
  it('reads a body that arrives in several chunks into one buffer, byte for byte', async () => {
    const chunks = [0, 1, 2, 3].map((i) => Buffer.alloc(100_000, String(i)));
    const { result } = await exchange(chunks, {}, (req) => readBody(req, 1024 * 1024));
    expect(result.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('refuses a chunked body at the byte past the limit, before the rest arrives', async () => {
    const limit = 150_000;
    // Chunked (no Content-Length): the limit can only be enforced while reading.
    const chunks = [0, 1, 2, 3, 4, 5].map(() => Buffer.alloc(60_000, 'z'));
    const { result, written } = await exchange(
      chunks,
      { 'transfer-encoding': 'chunked' },
      async (req) => code(readBody(req, limit)),
    );
    expect(result).toBe('body_too_large');
    // Refused on the third chunk: the client never got to write all six.
    expect(written).toBeLessThan(6 * 60_000);
  });

  it('refuses a declared Content-Length over the limit before reading a byte', async () => {
    let sawData = false;
    const { result } = await exchange(
      [Buffer.alloc(10, 'a')],
      { 'content-length': '10' },
      (req) => {
        req.once('data', () => (sawData = true));
        req.pause();
        return code(readBody(req, 9));
      },
    );
    expect(result).toBe('body_too_large');
    expect(sawData).toBe(false);
  });

  it('refuses a malformed Content-Length', async () => {
    const r = await code(
      readBody({ headers: { 'content-length': '1e3' } } as unknown as IncomingMessage, 9),
    );
    expect(r).toBe('request_invalid');
  });
});

describe('asBuffer', () => {
  it('is the same memory, never a copy', () => {
    const buf = Buffer.from('verified body');
    expect(asBuffer(buf)).toBe(buf);
    const backing = new Uint8Array(32).fill(0x61);
    const view = backing.subarray(4, 12);
    const b = asBuffer(view);
    expect(b.length).toBe(8);
    backing[4] = 0x62;
    expect(b[0]).toBe(0x62);
  });
});
