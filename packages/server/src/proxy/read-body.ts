/**
 * Reads a request body into memory, refusing it past the limit.
 *
 * MUST: a declared `Content-Length` over the limit is refused before any byte is read,
 * and a body that grows past the limit while streaming is refused at that byte. Nothing
 * of a refused body is ever forwarded (the caller forwards only a complete, verified body).
 */
import type { IncomingMessage } from 'node:http';
import { NexusError } from '@nexus/protocol';

export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    if (!/^\d+$/.test(declared) || !Number.isSafeInteger(n))
      throw new NexusError('request_invalid');
    if (n > maxBytes) throw new NexusError('body_too_large');
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) throw new NexusError('body_too_large');
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
}
