// Streaming response-body scrubber: decode the upstream content-coding, then redact every
// secret pattern, chunk by chunk.
//
// Security invariants:
// - MUST NOT pass a body through unscanned: an encoding we cannot decode (zstd, compress,
//   stacked codings, anything unknown) fails closed with `upstream_invalid`.
// - MUST NOT buffer the whole body: the decoder is paused whenever the consumer is slow,
//   so a decompression bomb streams through in bounded memory.
// - Safe bytes are flushed on every chunk so server-sent events keep flowing.
// The caller forwards the output uncompressed: it removes `content-encoding` and
// `content-length` from the response (see `BODY_REWRITE_HEADERS`).
import { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import { NexusError } from '@nexus-proxy/protocol';
import { createRedactor } from './redactor.js';
import type { Matcher } from './matcher.js';

/** Response headers the caller MUST drop when relaying a scrubbed body. */
export const BODY_REWRITE_HEADERS: readonly string[] = ['content-encoding', 'content-length'];

/** A content-coding the scrubber can decode. */
export type SupportedCoding = 'identity' | 'gzip' | 'deflate' | 'br';

/** Options of {@link createScrubStream}. */
export interface ScrubStreamOptions {
  /** The compiled secrets (`compileMatcher(secretPatterns(...))`). */
  patterns: Matcher;
  /**
   * The codings to undo: the upstream `Content-Encoding` value, or what
   * {@link responseCoding} found in the response headers (absent or empty: identity).
   */
  contentEncoding?: string | readonly string[] | undefined;
  /**
   * Fails with `upstream_invalid` once more than this many decoded bytes went through
   * (default: no limit; memory is bounded either way).
   */
  maxDecompressedBytes?: number;
  /** Replacement text (default `[REDACTED]`). */
  replacement?: string;
}

/** The scrubbing stream: write upstream bytes, read redacted, decoded bytes. */
export interface ScrubStream extends Duplex {
  /** Number of redacted regions so far (final once the stream has ended). */
  readonly redactions: number;
  /** Decoded bytes seen so far (before redaction). */
  readonly decodedBytes: number;
}

/**
 * Parses a `Content-Encoding` value into the one coding to undo.
 *
 * @throws NexusError `upstream_invalid` for unknown or stacked codings.
 */
export function parseContentEncoding(
  value: string | readonly string[] | undefined,
): SupportedCoding {
  const raw = typeof value === 'string' ? [value] : (value ?? []);
  const codings = raw
    .flatMap((v) => v.split(','))
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return 'identity';
  if (codings.length > 1) {
    throw new NexusError('upstream_invalid', 'upstream response uses stacked content codings');
  }
  switch (codings[0]) {
    case 'gzip':
    case 'x-gzip':
      return 'gzip';
    case 'deflate':
      return 'deflate';
    case 'br':
      return 'br';
    default:
      throw new NexusError(
        'upstream_invalid',
        'upstream response uses an unsupported content coding',
      );
  }
}

/**
 * The one coding to undo for a response: its `Content-Encoding` and any transfer coding
 * other than `chunked` (`Transfer-Encoding: gzip, chunked` compresses the body as surely
 * as `Content-Encoding: gzip`; the HTTP client removes only the chunked framing).
 *
 * @throws NexusError `upstream_invalid` for unknown or stacked codings (a coding in both
 *   headers is stacked).
 */
export function responseCoding(
  headers: Readonly<Record<string, string | readonly string[] | undefined>>,
): SupportedCoding {
  const list = (v: string | readonly string[] | undefined): string[] =>
    (typeof v === 'string' ? [v] : (v ?? [])).flatMap((x) => x.split(','));
  const transfer = list(headers['transfer-encoding']).filter(
    (c) => c.trim().toLowerCase() !== 'chunked',
  );
  return parseContentEncoding([...list(headers['content-encoding']), ...transfer]);
}

function createDecoder(coding: SupportedCoding, firstByte: number): Transform | undefined {
  switch (coding) {
    case 'identity':
      return undefined;
    case 'gzip':
      return zlib.createGunzip();
    case 'deflate':
      // RFC 9110 says zlib-wrapped; some servers send raw deflate. A zlib header has
      // compression method 8 in its low nibble.
      return (firstByte & 0x0f) === 0x08 ? zlib.createInflate() : zlib.createInflateRaw();
    case 'br':
      return zlib.createBrotliDecompress();
  }
}

/**
 * Creates a Duplex that decodes (gzip, x-gzip, deflate, br) and redacts a response body.
 * Pipe the upstream body in and the output to the agent, e.g. with `stream.pipeline`.
 *
 * @throws NexusError `upstream_invalid` synchronously for an unsupported coding; the
 *   stream errors with `upstream_invalid` on a corrupt body or past `maxDecompressedBytes`.
 * @example
 * const scrub = createScrubStream({ patterns, contentEncoding: res.headers['content-encoding'] });
 * await pipeline(res.body, scrub, clientResponse);
 */
export function createScrubStream(options: ScrubStreamOptions): ScrubStream {
  const coding = parseContentEncoding(options.contentEncoding);
  const redactor = createRedactor(options.patterns, options.replacement);
  const limit = options.maxDecompressedBytes ?? Number.POSITIVE_INFINITY;
  let decoded = 0;
  let decoder: Transform | undefined;
  let decoderStarted = false;
  let pendingWrite: (() => void) | undefined;

  const stream = new Duplex({
    // Readable side in bytes: the consumer's pace bounds what we decode.
    readableHighWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb): void {
      if (coding === 'identity') {
        if (!emit(chunk)) {
          pendingWrite = () => cb();
          return;
        }
        cb();
        return;
      }
      if (!decoderStarted) startDecoder(chunk[0] ?? 0);
      const d = decoder!;
      if (d.write(chunk)) cb();
      else d.once('drain', () => cb());
    },
    final(cb): void {
      const d = decoder;
      if (d === undefined) {
        // Identity, or a coded body with no bytes at all: nothing more to decode.
        finish();
        cb();
        return;
      }
      d.once('end', () => {
        finish();
        cb();
      });
      d.end();
    },
    read(): void {
      decoder?.resume();
      const p = pendingWrite;
      pendingWrite = undefined;
      p?.();
    },
    destroy(err, cb): void {
      decoder?.destroy();
      cb(err);
    },
  });

  function emit(data: Buffer): boolean {
    if (stream.destroyed) return false;
    decoded += data.length;
    if (decoded > limit) {
      stream.destroy(
        new NexusError('upstream_invalid', 'upstream response body exceeds the size limit'),
      );
      return false;
    }
    const out = redactor.push(data);
    // An empty push still counts as progress; only a full buffer applies back-pressure.
    return out.length === 0 ? true : stream.push(out);
  }

  function finish(): void {
    if (stream.destroyed) return;
    const tail = redactor.end();
    if (tail.length > 0) stream.push(tail);
    stream.push(null);
  }

  function startDecoder(firstByte: number): void {
    decoderStarted = true;
    decoder = createDecoder(coding, firstByte);
    const d = decoder!;
    d.on('data', (data: Buffer) => {
      if (!emit(data)) d.pause();
    });
    d.on('error', (err) => {
      stream.destroy(
        new NexusError('upstream_invalid', 'upstream response body cannot be decoded', {
          cause: err,
        }),
      );
    });
  }

  Object.defineProperty(stream, 'redactions', { get: () => redactor.count, enumerable: true });
  Object.defineProperty(stream, 'decodedBytes', { get: () => decoded, enumerable: true });
  return stream as ScrubStream;
}
