// The escape grammar of the redactor's escapes view (see `redactor.ts`): percent escapes,
// JSON, JavaScript and Python string escapes, HTML numeric and common named character
// references. Three families, by their introducer: `%`, `\` and `&`.
// A pure function of the bytes: an unfinished escape is held back by the public grammar,
// never by the secrets.

/** The longest escape decoded, in raw bytes (`&#x10FFFF;`). */
export const MAX_ESCAPE = 10;

/** Hex digit values; -1 for any other byte. */
export const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}
/** HTML named references of ASCII characters that upstream HTML escapers emit. */
const NAMED: ReadonlyMap<string, number> = new Map(
  Object.entries({
    amp: 0x26,
    lt: 0x3c,
    gt: 0x3e,
    quot: 0x22,
    apos: 0x27,
    plus: 0x2b,
    sol: 0x2f,
    bsol: 0x5c,
    equals: 0x3d,
    num: 0x23,
    percnt: 0x25,
    colon: 0x3a,
    semi: 0x3b,
    comma: 0x2c,
    period: 0x2e,
    excl: 0x21,
    quest: 0x3f,
    lowbar: 0x5f,
    dollar: 0x24,
    commat: 0x40,
    lsqb: 0x5b,
    rsqb: 0x5d,
    lcub: 0x7b,
    rcub: 0x7d,
    verbar: 0x7c,
    grave: 0x60,
    Hat: 0x5e,
    tilde: 0x7e,
    ast: 0x2a,
    lpar: 0x28,
    rpar: 0x29,
  }),
);
const MAX_NAME = 6;
/**
 * NAMED by the name's bytes as a number (7 bits a letter; at most MAX_NAME letters fit a
 * double exactly): a lookup without making a string, on the redactor's hot path.
 */
const NAMED_BY_KEY: ReadonlyMap<number, number> = new Map(
  [...NAMED].map(([name, cp]) => [nameKey(Buffer.from(name, 'latin1'), 0, name.length), cp]),
);
function nameKey(b: Uint8Array, from: number, to: number): number {
  let key = 0;
  for (let i = from; i < to; i++) key = key * 128 + b[i]!;
  return key;
}

// parseEscape results: INCOMPLETE (a prefix of a possible escape), LITERAL (the first
// byte is not the start of an escape), or value * 32 + length * 2 + isByte.
export const INCOMPLETE = -1;
export const LITERAL = -2;
const escape = (value: number, length: number, isByte: 0 | 1): number =>
  value * 32 + length * 2 + isByte;

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** Hex digits b[from, to) as a number; -1 when one is not a hex digit. */
function hexValue(b: Uint8Array, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const h = HEX[b[i]!]!;
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

/**
 * Classifies the pending bytes `b[0, n)`, which start with `%`, `\` or `&` (anything else
 * is LITERAL). Pure function of the bytes: the decoder's hold-back of an unfinished
 * escape follows the public escape grammar, never the secrets.
 */
export function parseEscape(b: Uint8Array, n: number): number {
  const c0 = b[0]!;
  if (c0 === 0x25) {
    // %HH: a byte
    for (let i = 1; i < n; i++) if (HEX[b[i]!]! < 0) return LITERAL;
    return n < 3 ? INCOMPLETE : escape(hexValue(b, 1, 3), 3, 1);
  }
  if (c0 === 0x5c) {
    if (n < 2) return INCOMPLETE;
    const c1 = b[1]!;
    switch (c1) {
      case 0x22: // \"
      case 0x27: // \'
      case 0x2f: // \/
      case 0x5c: // \\
        return escape(c1, 2, 0);
      case 0x62: // \b
        return escape(8, 2, 0);
      case 0x66: // \f
        return escape(12, 2, 0);
      case 0x6e: // \n
        return escape(10, 2, 0);
      case 0x72: // \r
        return escape(13, 2, 0);
      case 0x74: // \t
        return escape(9, 2, 0);
      case 0x78: // \xHH: in JavaScript and Python text, the code point U+00HH
        for (let i = 2; i < n; i++) if (HEX[b[i]!]! < 0) return LITERAL;
        return n < 4 ? INCOMPLETE : escape(hexValue(b, 2, 4), 4, 0);
      case 0x75: {
        if (n > 2 && b[2] === 0x7b) {
          // \u{H...}: JavaScript's code point escape, 1 to 6 digits
          for (let i = 3; i < n; i++) {
            if (b[i] === 0x7d && i > 3 && i === n - 1) {
              const cp = hexValue(b, 3, i);
              return cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? LITERAL : escape(cp, n, 0);
            }
            if (HEX[b[i]!]! < 0 || i - 3 >= 6) return LITERAL;
          }
          return INCOMPLETE;
        }
        // \uHHHH, and a surrogate pair as two of them
        for (let i = 2; i < Math.min(n, 6); i++) if (HEX[b[i]!]! < 0) return LITERAL;
        if (n < 6) return INCOMPLETE;
        const unit = hexValue(b, 2, 6);
        if (unit >= 0xdc00 && unit <= 0xdfff) return escape(0xfffd, 6, 0);
        if (unit < 0xd800 || unit > 0xdbff) return escape(unit, 6, 0);
        // A high surrogate: the low one must follow as \uDC00-\uDFFF.
        if (n > 6 && b[6] !== 0x5c) return escape(0xfffd, 6, 0);
        if (n > 7 && b[7] !== 0x75) return escape(0xfffd, 6, 0);
        for (let i = 8; i < n; i++) if (HEX[b[i]!]! < 0) return escape(0xfffd, 6, 0);
        if (n < 12) return INCOMPLETE;
        const low = hexValue(b, 8, 12);
        if (low < 0xdc00 || low > 0xdfff) return escape(0xfffd, 6, 0);
        return escape(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00), 12, 0);
      }
      default:
        return LITERAL;
    }
  }
  if (c0 === 0x26) {
    if (n < 2) return INCOMPLETE;
    if (b[1] === 0x23) {
      // &#DDDDDDD; or &#xHHHHHH;
      if (n < 3) return INCOMPLETE;
      const hex = b[2] === 0x78 || b[2] === 0x58;
      const first = hex ? 3 : 2;
      const maxDigits = hex ? 6 : 7;
      for (let i = first; i < n; i++) {
        const c = b[i]!;
        if (c === 0x3b && i > first && i === n - 1) {
          let cp = 0;
          for (let j = first; j < i; j++) cp = cp * (hex ? 16 : 10) + HEX[b[j]!]!;
          if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return LITERAL;
          return escape(cp, n, 0);
        }
        const digit = hex ? HEX[c]! >= 0 : c >= 0x30 && c <= 0x39;
        if (!digit || i - first >= maxDigits) return LITERAL;
      }
      return INCOMPLETE;
    }
    // &name;
    for (let i = 1; i < n; i++) {
      const c = b[i]!;
      if (c === 0x3b && i > 1 && i === n - 1) {
        const cp = NAMED_BY_KEY.get(nameKey(b, 1, i));
        return cp === undefined ? LITERAL : escape(cp, n, 0);
      }
      if (!isLetter(c) || i > MAX_NAME) return LITERAL;
    }
    return INCOMPLETE;
  }
  return LITERAL;
}

/** Escape families, by introducer: percent, backslash, HTML reference. */
export const PERCENT = 1;
export const BACKSLASH = 2;
export const REFERENCE = 4;
const FAMILY_OF = new Map([
  [0x25, PERCENT],
  [0x5c, BACKSLASH],
  [0x26, REFERENCE],
]);

/**
 * Decodes every escape of `bytes` of the given families (all by default), greedily from
 * the start, as the escapes view does; what is not an escape stays as it is.
 *
 * @example
 * decodeEscapes(Buffer.from('a%2Fb')).toString(); // 'a/b'
 */
export function decodeEscapes(
  bytes: Uint8Array,
  families = PERCENT | BACKSLASH | REFERENCE,
): Buffer {
  const out: number[] = [];
  const pend = new Uint8Array(16);
  let n = 0;
  const resolve = (final: boolean): void => {
    while (n > 0) {
      const enabled = ((FAMILY_OF.get(pend[0]!) ?? 0) & families) !== 0;
      const r = final || !enabled ? LITERAL : parseEscape(pend, n);
      if (r === INCOMPLETE) return;
      let used = 1;
      if (r === LITERAL) out.push(pend[0]!);
      else {
        used = (r >> 1) & 15;
        if ((r & 1) === 1) out.push(Math.floor(r / 32));
        else out.push(...Buffer.from(String.fromCodePoint(Math.floor(r / 32)), 'utf8'));
      }
      pend.copyWithin(0, used, n);
      n -= used;
    }
  };
  for (const b of bytes) {
    if (n === 0 && ((FAMILY_OF.get(b) ?? 0) & families) === 0) {
      out.push(b);
      continue;
    }
    pend[n++] = b;
    resolve(false);
  }
  resolve(true);
  return Buffer.from(out);
}
