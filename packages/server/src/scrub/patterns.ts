// The logical patterns of a secret: the bytes the redactor looks for once its views have
// undone every encoding it knows (see `redactor.ts`). Encoded forms (base64, hex, percent,
// JSON and HTML escapes) are NOT listed here: the views decode them, in any mix of case and
// escaping, so one pattern per secret covers them all.
import { NexusError } from '@nexus/protocol';
import { decodeEscapes } from './escapes.js';

/** Default minimum secret length in bytes; shorter values would redact common words. */
export const MIN_SECRET_LENGTH = 8;

/** Options of {@link patternsOf} and {@link secretPatterns}. */
export interface SecretPatternOptions {
  /** Minimum secret length in UTF-8 bytes (default {@link MIN_SECRET_LENGTH}). */
  minLength?: number;
}

/** HTTP optional whitespace and line breaks, which header values lose on the way out. */
const OWS = /^[ \t\r\n]+|[ \t\r\n]+$/g;

/**
 * The logical patterns of one secret, deduplicated:
 * - the secret without surrounding whitespace (a value stored as `token\n` travels as
 *   `token`: HTTP trims header values);
 * - a secret with a line break is matched line by line (each line of at least `minLength`
 *   bytes): no pattern contains CR or LF, which lets the redactor release every complete
 *   line at once (see `redactor.ts`);
 * - a secret with a space also as it reads after form encoding (`+` for space; the
 *   redactor does not decode `+`, since it is also a literal plus and a base64 digit);
 * - a secret holding text that reads as an escape (`%2F`, `\u0041`, `&amp;`) also as
 *   the escapes view decodes it, so it is found when the upstream escapes other parts.
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
  const lines = /[\r\n]/.test(text)
    ? text
        .split(/[\r\n]+/)
        .map((l) => l.replace(OWS, ''))
        .filter((l) => l.length >= minLength)
    : [text];
  const forms = new Set<string>();
  const add = (form: string): void => {
    // MUST: no pattern holds a line break (the redactor releases every complete line).
    for (const part of form.split(/[\r\n]+/)) if (part.length >= minLength) forms.add(part);
  };
  for (const line of lines) {
    for (const form of line.includes(' ') ? [line, line.replace(/ /g, '+')] : [line]) {
      add(form);
      add(decodeEscapes(Buffer.from(form, 'latin1')).toString('latin1'));
    }
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
