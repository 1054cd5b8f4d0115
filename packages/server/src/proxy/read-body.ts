/**
 * Reads a request body into memory, refusing it past the limit, and, after such a refusal,
 * discards a bounded remainder so that the client can read the 413.
 *
 * MUST: a declared `Content-Length` over the limit is refused before any byte is read,
 * and a body that grows past the limit while streaming is refused at that byte. Nothing
 * of a refused body is ever forwarded (the caller forwards only a complete, verified body).
 * MUST: bytes discarded after a refusal are never buffered, and at most `2 x limit` bytes
 * of one request are ever read: past that the connection is closed.
 */
import type { IncomingMessage } from 'node:http';
import { NexusError } from '@nexus-proxy/protocol';

/** Body bytes each request has delivered so far (for {@link discardBody}). */
const received = new WeakMap<IncomingMessage, number>();

/**
 * Resolves with the whole body, or rejects with `body_too_large` (the request stream is
 * left paused and intact: see {@link discardBody}), `request_invalid` for a malformed
 * `Content-Length`, or the stream's own error when the client goes away.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    if (!/^\d+$/.test(declared) || !Number.isSafeInteger(n))
      return Promise.reject(new NexusError('request_invalid'));
    if (n > maxBytes) return Promise.reject(new NexusError('body_too_large'));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      received.set(req, total);
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        // Not destroyed: destroying the request resets the connection, and a client still
        // uploading would never read the 413.
        req.pause();
        done();
        reject(new NexusError('body_too_large'));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => {
      done();
      reject(Object.assign(new Error('request aborted'), { code: 'ECONNRESET' }));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}

/**
 * After a `body_too_large` refusal: reads and throws away the rest of the body, so the
 * client finishes its upload and reads the 413 (closing a connection with unread bytes
 * resets it, and most clients then report a network error, not the 413). Returns false,
 * reading nothing, when the body is larger than `2 x maxBytes` in total by its declared
 * length: not worth the bandwidth, the caller closes the connection with its answer. A body
 * that grows past that bound while being discarded has its connection destroyed.
 */
export function discardBody(req: IncomingMessage, maxBytes: number): boolean {
  if (req.destroyed) return false;
  const budget = 2 * maxBytes;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (!(declared <= budget)) return false;
  let total = received.get(req) ?? 0;
  req.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > budget) req.socket.destroy();
  });
  req.on('error', () => undefined);
  req.resume();
  return true;
}

/**
 * `bytes` as a Buffer over the same memory, never a copy: a forwarded body is sent from
 * the buffer it was read and verified in (a 1 MiB body was copied once more for the
 * upstream request, issue 14 step 5). Mechanics only read the body.
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
