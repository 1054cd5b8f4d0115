// Byte encodings used on the wire (base64, base64url, UTF-8) without Buffer, so the
// protocol package runs on any WebCrypto runtime.

import type { SubtleCrypto } from './webcrypto.js';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_LOOKUP[B64.charCodeAt(i)] = i;

/** Standard base64 with padding. */
export function base64Encode(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + '==';
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + '=';
  }
  return out;
}

/**
 * Strict standard base64 decoding (padding optional but must be correct when present).
 * Returns undefined on any invalid input. Four characters at a time (a signature and a
 * digest are decoded on every request).
 */
export function base64Decode(text: string): Uint8Array | undefined {
  let end = text.length;
  if (end % 4 === 0 && end > 0 && text.charCodeAt(end - 1) === 61 /* = */) {
    end -= text.charCodeAt(end - 2) === 61 ? 2 : 1;
  }
  const rest = end % 4;
  if (rest === 1) return undefined;
  const full = end - rest;
  const out = new Uint8Array((end * 3) >> 2);
  let o = 0;
  for (let i = 0; i < full; i += 4) {
    const a = text.charCodeAt(i);
    const b = text.charCodeAt(i + 1);
    const c = text.charCodeAt(i + 2);
    const d = text.charCodeAt(i + 3);
    if ((a | b | c | d) > 127) return undefined;
    // An invalid character (-1) sets the sign bit.
    const n =
      (B64_LOOKUP[a]! << 18) | (B64_LOOKUP[b]! << 12) | (B64_LOOKUP[c]! << 6) | B64_LOOKUP[d]!;
    if (n < 0) return undefined;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (rest > 0) {
    const a = text.charCodeAt(full);
    const b = text.charCodeAt(full + 1);
    const c = rest === 3 ? text.charCodeAt(full + 2) : 65; /* A: no bits */
    if ((a | b | c) > 127) return undefined;
    const n = (B64_LOOKUP[a]! << 18) | (B64_LOOKUP[b]! << 12) | (B64_LOOKUP[c]! << 6);
    if (n < 0) return undefined;
    out[o++] = n >> 16;
    if (rest === 3) out[o++] = (n >> 8) & 0xff;
    // Unused low bits must be zero (canonical encoding).
    if ((n & (rest === 3 ? 0xff : 0xffff)) !== 0) return undefined;
  }
  return out;
}

/** base64url without padding (RFC 4648 §5), as used by JOSE. */
export function base64UrlEncode(bytes: Uint8Array): string {
  return base64Encode(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict base64url decoding without padding; undefined on invalid input. */
export function base64UrlDecode(text: string): Uint8Array | undefined {
  if (/[^A-Za-z0-9_-]/.test(text)) return undefined;
  return base64Decode(text.replace(/-/g, '+').replace(/_/g, '/'));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 encoding. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strict UTF-8 decoding; undefined on invalid bytes. */
export function utf8Decode(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Body input accepted by the digest and signing helpers. */
export type BodyInput = Uint8Array | ArrayBuffer | string | null | undefined;

/** Normalises a body to bytes (strings are UTF-8 encoded; null/undefined is empty). */
export function bodyBytes(body: BodyInput): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return utf8(body);
  if (body instanceof Uint8Array) return body;
  return new Uint8Array(body);
}

/** Constant-time comparison of two byte arrays (length is not secret). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** The WebCrypto subtle API of the runtime. */
export function subtle(): SubtleCrypto {
  return globalThis.crypto.subtle;
}

/**
 * The bytes as a WebCrypto BufferSource without a copy: WebCrypto copies its input itself
 * before it returns (WebCrypto spec, "get a copy of the buffer source"; Node's jobs do), so
 * a second copy here only cost time (a whole body for a large digest). A view on a
 * SharedArrayBuffer, or on another realm's buffer, is copied ({@link toBuffer}).
 */
export function bufferSource(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : toBuffer(bytes);
}

/** Copies bytes into a fresh ArrayBuffer-backed view (WebCrypto typings want BufferSource). */
export function toBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(new ArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}
