// The byte patterns that reveal a secret: the secret itself and every encoding of it an
// upstream is likely to echo (base64 inside `Basic ...`, a URL-encoded query string in a
// `Location`, a hex dump, a JSON string). The matcher redacts all of them.
import { NexusError } from '@nexus/protocol';

/** Default minimum secret length in bytes; shorter values would redact common words. */
export const MIN_SECRET_LENGTH = 8;

/** Options of {@link encodingsOf} and {@link secretsFor}. */
export interface SecretEncodingOptions {
  /** Minimum secret length in UTF-8 bytes (default {@link MIN_SECRET_LENGTH}). */
  minLength?: number;
}

/**
 * The base64 alphabet characters that depend only on `bytes` when `bytes` sits at
 * offset `shift` (0, 1 or 2) modulo 3 inside a larger base64-encoded buffer. The edge
 * characters that also carry bits of the neighbouring bytes are dropped, so the result
 * is a substring of the encoding of ANY buffer containing `bytes` at that alignment.
 * (The dropped edges reveal at most 10 bits of the secret: an accepted trade-off.)
 */
function alignedBase64(bytes: Uint8Array, shift: 0 | 1 | 2): string {
  const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
  const full = padded.toString('base64').replace(/=+$/, '');
  const first = Math.ceil((8 * shift) / 6);
  const end = Math.floor((8 * padded.length) / 6);
  return full.slice(first, end);
}

/** Every byte as `%XX`. */
function percentAll(bytes: Uint8Array, upper: boolean): string {
  let out = '';
  for (const b of bytes) {
    const h = b.toString(16).padStart(2, '0');
    out += '%' + (upper ? h.toUpperCase() : h);
  }
  return out;
}

/** Lower-cases the hex digits of `%XX` escapes only. */
function lowerPercentHex(s: string): string {
  return s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
}

/** The JSON string-body forms of `s` (without quotes) that differ from plain. */
function jsonForms(s: string): string[] {
  const std = JSON.stringify(s).slice(1, -1);
  const asciiLower = std.replace(
    /[\u0080-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
  );
  const asciiUpper = asciiLower.replace(
    /\\u([0-9a-f]{4})/g,
    (_m, h: string) => '\\u' + h.toUpperCase(),
  );
  const forms = new Set<string>();
  for (const f of [std, asciiLower, asciiUpper]) {
    forms.add(f);
    forms.add(f.replace(/\//g, '\\/'));
  }
  return [...forms];
}

/**
 * Every byte pattern that reveals `secret`, deduplicated:
 * - plain (UTF-8 bytes, or the raw bytes for a `Uint8Array`);
 * - standard base64 and base64url in all three alignments, edge characters dropped, so the
 *   secret is found inside a larger base64 string such as `Basic base64(user:pass)`;
 * - percent-encoded: `encodeURIComponent` form (upper- and lower-case hex), the
 *   form-urlencoded form (`+` for space), and every byte percent-encoded (both cases);
 * - hex, lower and upper case;
 * - JSON string escapes where they differ (`\"`, `\\`, `\/`, control characters,
 *   non-ASCII as `\uXXXX` in either case).
 *
 * @throws NexusError `validation_failed` when the secret is shorter than `minLength` bytes.
 * @example
 * const patterns = encodingsOf('ghp_exampleexample');
 */
export function encodingsOf(
  secret: string | Uint8Array,
  options: SecretEncodingOptions = {},
): Buffer[] {
  const minLength = options.minLength ?? MIN_SECRET_LENGTH;
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  if (bytes.length === 0 || bytes.length < minLength) {
    throw new NexusError(
      'validation_failed',
      `secret shorter than the minimum of ${minLength} bytes`,
    );
  }
  const forms = new Set<string>();
  const out: Buffer[] = [bytes];
  const seen = new Set<string>([bytes.toString('latin1')]);
  const add = (text: string): void => {
    if (text.length === 0) return;
    forms.add(text);
  };

  for (const shift of [0, 1, 2] as const) {
    const std = alignedBase64(bytes, shift);
    add(std);
    add(std.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  // Percent-encoding of arbitrary bytes: decode as UTF-8 only if it round-trips.
  // (A string with a lone surrogate has no such form: encodeURIComponent would throw.)
  const asText = typeof secret === 'string' ? secret : bytes.toString('utf8');
  const isText = Buffer.from(asText, 'utf8').equals(bytes) && !/\p{Cs}/u.test(asText);
  if (isText) {
    const uri = encodeURIComponent(asText);
    add(uri);
    add(lowerPercentHex(uri));
    const form = new URLSearchParams({ x: asText }).toString().slice(2);
    add(form);
    add(lowerPercentHex(form));
    for (const j of jsonForms(asText)) add(j);
  }
  add(percentAll(bytes, true));
  add(percentAll(bytes, false));
  const hex = bytes.toString('hex');
  add(hex);
  add(hex.toUpperCase());

  for (const f of forms) {
    // The JSON form keeps non-ASCII characters: its bytes are its UTF-8 encoding.
    const b = Buffer.from(f, 'utf8');
    const key = b.toString('latin1');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(b);
  }
  return out;
}

/**
 * The patterns of several secrets (e.g. every field of a credential and the tokens derived
 * from it), deduplicated. Empty strings are skipped; any other value shorter than
 * `minLength` throws, so the caller decides (refuse the credential, or lower the limit).
 *
 * @throws NexusError `validation_failed` for a value shorter than `minLength` bytes.
 */
export function secretsFor(
  values: readonly (string | Uint8Array)[],
  options: SecretEncodingOptions = {},
): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const value of values) {
    if (value.length === 0) continue;
    for (const p of encodingsOf(value, options)) {
      const key = p.toString('latin1');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(p);
    }
  }
  return out;
}
