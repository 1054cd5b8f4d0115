// The logical patterns of a secret: the bytes the redactor looks for once its views have
// undone every encoding it knows (see `redactor.ts`). Encoded forms (base64, hex, percent,
// JSON and HTML escapes) are NOT listed here: the views decode them, in any mix of case and
// escaping, so one pattern per secret covers them all.
import { NexusError } from '@nexus-proxy/protocol';
import { decodeEscapes } from './escapes.js';

/** Default minimum secret length in bytes; shorter values would redact common words. */
export const MIN_SECRET_LENGTH = 8;

/** Options of {@link patternsOf} and {@link secretPatterns}. */
export interface SecretPatternOptions {
  /** Minimum secret length in UTF-8 bytes (default {@link MIN_SECRET_LENGTH}). */
  minLength?: number;
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** JSON string escaping of a latin1 (byte-per-char) text: `\`, `"` and control bytes. */
function jsonString(t: string): string {
  return JSON.stringify(t).slice(1, -1);
}

/** HTTP optional whitespace and line breaks, which header values lose on the way out. */
const OWS = /^[ \t\r\n]+|[ \t\r\n]+$/g;

/**
 * The logical patterns of one secret, deduplicated, each at least `minLength` bytes:
 * - the secret without surrounding whitespace (a value stored as `token\n` travels as
 *   `token`: HTTP trims header values), and, when it holds a line break, each of its lines
 *   too: a raw line break ends every match (`Matcher.rawClassOf`), so a secret reflected
 *   as it is is matched line by line, and one reflected escaped (`\n`, `%0A`) whole;
 * - with a space, also as it reads after form encoding (`+` for space; the redactor does
 *   not decode `+`, since it is also a literal plus and a base64 digit);
 * - when it holds text that reads as an escape (`%2F`, `\t`, `&amp;`): also as the escapes
 *   view reads it after an encoder escaped some families and not others (JSON doubles `\`
 *   but leaves `%2F`; HTML writes `&amp;` but leaves `\t`): every subset of the three
 *   families decoded;
 * - with characters beyond ASCII, also in Latin-1 (`%E4` from JavaScript's `escape()`) and
 *   as its UTF-8 bytes read as Latin-1 characters (Python's `b'\xc3\xa4'`, decoded by
 *   the escapes view as U+00C3 U+00A4).
 *
 * @throws NexusError `validation_failed` when the trimmed secret is shorter than `minLength`.
 * @example
 * const patterns = patternsOf('ghp_exampleexample');
 */
export function patternsOf(
  secret: string | Uint8Array,
  options: SecretPatternOptions = {},
): Buffer[] {
  const minLength = options.minLength ?? MIN_SECRET_LENGTH;
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  // latin1 keeps one char per byte, so trimming and splitting work on raw bytes too.
  const text = bytes.toString('latin1').replace(OWS, '');
  if (text.length === 0 || text.length < minLength) {
    throw new NexusError(
      'validation_failed',
      `secret shorter than the minimum of ${minLength} bytes`,
    );
  }
  const forms = new Set<string>();
  const add = (form: string): void => {
    if (form.length >= minLength) forms.add(form);
  };
  const bases = [text];
  if (text.includes(' ')) bases.push(text.replace(/ /g, '+'));
  if (/[%\\&]/.test(text)) {
    // What the escapes view reads after a one-layer encoder (none, a JSON string, HTML)
    // escaped the secret, for every subset of the families it decodes.
    const encoders = [
      (t: string) => t,
      (t: string) => jsonString(t),
      (t: string) => t.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!),
    ];
    for (const base of [...bases]) {
      for (const encode of encoders) {
        const encoded = Buffer.from(encode(base), 'latin1');
        for (let families = 1; families <= 7; families++) {
          bases.push(decodeEscapes(encoded, families).toString('latin1'));
        }
      }
    }
  }
  for (const base of bases) {
    add(base);
    if (/[\r\n]/.test(base)) for (const line of base.split(/[\r\n]+/)) add(line.replace(OWS, ''));
  }
  // Beyond ASCII (`text` holds one char per UTF-8 byte): the characters as Latin-1 bytes,
  // when they fit, and every UTF-8 byte as a character of its own, in UTF-8.
  if (/[\x80-\xff]/.test(text)) {
    const chars = Buffer.from(text, 'latin1').toString('utf8');
    if (!chars.includes('\ufffd') && !/[^\t\n\r\x20-\xff]/.test(chars)) add(chars);
    add(Buffer.from(text, 'utf8').toString('latin1'));
  }
  return [...forms].map((f) => Buffer.from(f, 'latin1'));
}

/** True when {@link patternsOf} accepts `secret` (at least `minLength` bytes once trimmed). */
export function isRedactable(
  secret: string | Uint8Array,
  options: SecretPatternOptions = {},
): boolean {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret);
  const text = bytes.toString('latin1').replace(OWS, '');
  return text.length > 0 && text.length >= (options.minLength ?? MIN_SECRET_LENGTH);
}

/**
 * The patterns of several secrets (e.g. every field of a credential and the tokens derived
 * from it), deduplicated. Empty strings are skipped; any other value shorter than
 * `minLength` throws, so the caller decides (refuse the credential, or lower the limit).
 *
 * @throws NexusError `validation_failed` for a value shorter than `minLength` bytes.
 */
export function secretPatterns(
  values: readonly (string | Uint8Array)[],
  options: SecretPatternOptions = {},
): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const value of values) {
    if (value.length === 0) continue;
    for (const p of patternsOf(value, options)) {
      const key = p.toString('latin1');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(p);
    }
  }
  return out;
}
