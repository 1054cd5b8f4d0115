// The verification fast path for the profile's fixed header shape (issue 14 step 2): the
// Signature-Input and Signature fields a Nexus signer writes, recognised by one anchored
// pattern each, and the signature base built by concatenation instead of parsing and
// re-serialising structured fields.
//
// MUST: accept only inputs that the strict path (parseSignatures, createSignatureBase)
// accepts with the same result. Every function here returns undefined for anything else,
// and the caller then runs the strict path, which gives the verdict and the error code.
// Own code rather than a library: it is part of the small auditable security core, and it
// only narrows what the strict parser already accepts (test/fuzz/fast-signature.fuzz.test.ts
// checks both give the same verdict and code).

import { base64Decode } from './encoding.js';
import type { ParsedSignature } from './http-signatures/signatures.js';
import type { UrlParts } from './http-signatures/message.js';
import type { SfParameters } from './structured-fields.js';

/** The Signature-Input member a parsed fast-path signature came from. */
export interface FastSignature extends ParsedSignature {
  /** The member value, which is already the canonical `@signature-params` serialisation. */
  readonly signatureParams: string;
}

// One sf-string body without escapes: visible ASCII and SP except `"` and `\`. Such a
// string serialises back to exactly its received text.
const PLAIN_STRING = '[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*';
// A canonical non-negative sf-integer (no sign, no leading zero, at most 15 digits).
const CANONICAL_INT = '(?:0|[1-9][0-9]{0,14})';
/**
 * The Signature-Input written by signRequest: label `wimse`, one of the profile's four
 * component lists, and the five parameters in the signer's order. Single spaces, no
 * parameters on components: the member value is its own canonical serialisation.
 */
const SIGNATURE_INPUT_RE = new RegExp(
  '^wimse=(\\(("@method" (?:"@path" "@query"|"@request-target") "workload-identity-token" ' +
    '"nexus-intent"(?: "content-type" "content-digest")?)\\)' +
    `;created=(${CANONICAL_INT});expires=(${CANONICAL_INT});nonce="(${PLAIN_STRING})"` +
    `;tag="wimse-workload-to-workload";wimse-aud="(${PLAIN_STRING})")$`,
);
const SIGNATURE_RE = /^wimse=:([A-Za-z0-9+/=]*):$/;
const PLAIN_ITEM_STRING_RE = new RegExp(`^"(${PLAIN_STRING})"$`);
// A field line that trimOWS leaves unchanged and that cannot inject a line into the base.
const PLAIN_LINE_RE = /^(?:[^\r\n \t](?:[^\r\n]*[^\r\n \t])?)?$/;

/**
 * The one signature of a Signature-Input / Signature pair of field lines in the profile's
 * fixed shape, exactly as parseSignatures would return it; undefined for anything else.
 */
export function parseFastSignature(input: string, signature: string): FastSignature | undefined {
  const m = SIGNATURE_INPUT_RE.exec(input);
  if (m === null) return undefined;
  const s = SIGNATURE_RE.exec(signature);
  if (s === null) return undefined;
  const bytes = base64Decode(s[1]!);
  if (bytes === undefined) return undefined;
  const params: SfParameters = new Map();
  params.set('created', Number(m[3]));
  params.set('expires', Number(m[4]));
  params.set('nonce', m[5]!);
  params.set('tag', 'wimse-workload-to-workload');
  params.set('wimse-aud', m[6]!);
  const components = m[2]!.split(' ').map((quoted) => ({
    name: quoted.slice(1, -1),
    params: new Map() as SfParameters,
  }));
  return { label: 'wimse', components, params, signature: bytes, signatureParams: m[1]! };
}

/** The text of an sf-string item without escapes or parameters (as parseSfString); else undefined. */
export function parseFastSfString(value: string): string | undefined {
  return PLAIN_ITEM_STRING_RE.exec(value)?.[1];
}

/**
 * The signature base of a fast-path signature, by concatenation, or undefined when a
 * component is absent, repeated or not a plain single line (the strict path decides).
 *
 * @param field the single field line of a lower-case field name, or undefined if absent
 *   or repeated.
 */
export function fastSignatureBase(
  sig: FastSignature,
  method: string,
  url: UrlParts,
  field: (name: string) => string | undefined,
): string | undefined {
  if (method === '' || /[\r\n]/.test(method)) return undefined;
  let base = '';
  for (const { name } of sig.components) {
    let value: string | undefined;
    switch (name) {
      case '@method':
        value = method;
        break;
      case '@path':
        value = url.path;
        break;
      case '@query':
        value = `?${url.query ?? ''}`;
        break;
      case '@request-target':
        value = url.query === undefined ? url.path : `${url.path}?${url.query}`;
        break;
      default:
        value = field(name);
        if (value === undefined || !PLAIN_LINE_RE.test(value)) return undefined;
    }
    if (/[\r\n]/.test(value)) return undefined;
    base += `"${name}": ${value}\n`;
  }
  return `${base}"@signature-params": ${sig.signatureParams}`;
}
