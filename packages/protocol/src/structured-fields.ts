// RFC 8941 structured field values (dictionary, list, inner list, item, parameters):
// a small strict parser and serializer. Dates and display strings (RFC 9651) are not
// used by Nexus and are rejected. Every parse error is a NexusError with the caller's code.

import { base64Decode, base64Encode } from './encoding.js';
import { NexusError, type ErrorCode } from './errors.js';

/** An sf-token (RFC 8941 §3.3.4). */
export class SfToken {
  constructor(readonly value: string) {}
}

/** An sf-decimal (RFC 8941 §3.3.2); integers are plain numbers. */
export class SfDecimal {
  constructor(readonly value: number) {}
}

/** A bare item: sf-string (string), sf-integer (number), decimal, boolean, token or bytes. */
export type BareItem = string | number | boolean | Uint8Array | SfToken | SfDecimal;
/** Ordered parameters of an item or inner list. */
export type SfParameters = Map<string, BareItem>;
/** An item with its parameters. */
export interface SfItem {
  kind: 'item';
  value: BareItem;
  params: SfParameters;
}
/** An inner list with its parameters. */
export interface SfInnerList {
  kind: 'inner';
  items: SfItem[];
  params: SfParameters;
}
/** A member of a list or dictionary. */
export type SfMember = SfItem | SfInnerList;
/** An ordered dictionary. */
export type SfDictionary = Map<string, SfMember>;
/** A list. */
export type SfList = SfMember[];

/** Options for the parsers. */
export interface ParseOptions {
  /** The code of the NexusError thrown on malformed input (default `request_invalid`). */
  code?: ErrorCode;
  /** Reject a dictionary with a repeated key instead of keeping the last value. */
  rejectDuplicateKeys?: boolean;
}

const MAX_INT = 999_999_999_999_999;

const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isLcAlpha = (c: string): boolean => c >= 'a' && c <= 'z';
const isAlpha = (c: string): boolean => isLcAlpha(c) || (c >= 'A' && c <= 'Z');
const TCHAR_EXTRA = "!#$%&'*+-.^_`|~";
const isTchar = (c: string): boolean => isAlpha(c) || isDigit(c) || TCHAR_EXTRA.includes(c);
const KEY_RE = /^[a-z*][a-z0-9_\-.*]*$/;
const TOKEN_RE = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/;

class Parser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly code: ErrorCode,
  ) {
    // Only visible ASCII, SP and HTAB may appear in a field value.
    for (let k = 0; k < s.length; k++) {
      const c = s.charCodeAt(k);
      if ((c < 0x20 && c !== 0x09) || c > 0x7e) this.fail();
    }
  }

  fail(): never {
    throw new NexusError(this.code);
  }

  private peek(): string {
    return this.s[this.i] ?? '';
  }

  private skipSP(): void {
    while (this.s[this.i] === ' ') this.i++;
  }

  private skipOWS(): void {
    while (this.s[this.i] === ' ' || this.s[this.i] === '\t') this.i++;
  }

  private atEnd(): boolean {
    return this.i >= this.s.length;
  }

  finish(): void {
    this.skipSP();
    if (!this.atEnd()) this.fail();
  }

  begin(): void {
    this.skipSP();
  }

  dictionary(rejectDuplicates: boolean): SfDictionary {
    const dict: SfDictionary = new Map();
    while (!this.atEnd()) {
      const key = this.key();
      let member: SfMember;
      if (this.peek() === '=') {
        this.i++;
        member = this.member();
      } else {
        member = { kind: 'item', value: true, params: this.params() };
      }
      if (rejectDuplicates && dict.has(key)) this.fail();
      dict.set(key, member);
      this.skipOWS();
      if (this.atEnd()) return dict;
      if (this.peek() !== ',') this.fail();
      this.i++;
      this.skipOWS();
      if (this.atEnd()) this.fail();
    }
    return dict;
  }

  list(): SfList {
    const list: SfList = [];
    while (!this.atEnd()) {
      list.push(this.member());
      this.skipOWS();
      if (this.atEnd()) return list;
      if (this.peek() !== ',') this.fail();
      this.i++;
      this.skipOWS();
      if (this.atEnd()) this.fail();
    }
    return list;
  }

  member(): SfMember {
    return this.peek() === '(' ? this.innerList() : this.item();
  }

  innerList(): SfInnerList {
    if (this.peek() !== '(') this.fail();
    this.i++;
    const items: SfItem[] = [];
    while (!this.atEnd()) {
      this.skipSP();
      if (this.peek() === ')') {
        this.i++;
        return { kind: 'inner', items, params: this.params() };
      }
      items.push(this.item());
      const c = this.peek();
      if (c !== ' ' && c !== ')') this.fail();
    }
    return this.fail();
  }

  item(): SfItem {
    const value = this.bareItem();
    return { kind: 'item', value, params: this.params() };
  }

  params(): SfParameters {
    const params: SfParameters = new Map();
    while (this.peek() === ';') {
      this.i++;
      this.skipSP();
      const key = this.key();
      let value: BareItem = true;
      if (this.peek() === '=') {
        this.i++;
        value = this.bareItem();
      }
      params.set(key, value);
    }
    return params;
  }

  key(): string {
    const c = this.peek();
    if (!isLcAlpha(c) && c !== '*') this.fail();
    const start = this.i;
    while (!this.atEnd()) {
      const d = this.peek();
      if (!isLcAlpha(d) && !isDigit(d) && !'_-.*'.includes(d)) break;
      this.i++;
    }
    return this.s.slice(start, this.i);
  }

  bareItem(): BareItem {
    const c = this.peek();
    if (c === '-' || isDigit(c)) return this.number();
    if (c === '"') return this.string();
    if (c === '*' || isAlpha(c)) return this.token();
    if (c === ':') return this.bytes();
    if (c === '?') return this.boolean();
    return this.fail();
  }

  number(): number | SfDecimal {
    let sign = 1;
    if (this.peek() === '-') {
      sign = -1;
      this.i++;
    }
    if (!isDigit(this.peek())) this.fail();
    const start = this.i;
    let isDecimal = false;
    while (!this.atEnd()) {
      const c = this.peek();
      if (isDigit(c)) {
        this.i++;
      } else if (c === '.' && !isDecimal) {
        if (this.i - start > 12) this.fail();
        isDecimal = true;
        this.i++;
      } else break;
      const len = this.i - start;
      if (!isDecimal && len > 15) this.fail();
      if (isDecimal && len > 16) this.fail();
    }
    const text = this.s.slice(start, this.i);
    if (!isDecimal) return sign * Number.parseInt(text, 10);
    if (text.endsWith('.')) this.fail();
    const frac = text.length - text.indexOf('.') - 1;
    if (frac > 3) this.fail();
    return new SfDecimal(sign * Number.parseFloat(text));
  }

  string(): string {
    this.i++;
    let out = '';
    while (!this.atEnd()) {
      const c = this.s[this.i++]!;
      if (c === '\\') {
        const n = this.s[this.i++];
        if (n !== '"' && n !== '\\') this.fail();
        out += n;
      } else if (c === '"') {
        return out;
      } else {
        const code = c.charCodeAt(0);
        if (code < 0x20 || code > 0x7e) this.fail();
        out += c;
      }
    }
    return this.fail();
  }

  token(): SfToken {
    const start = this.i;
    this.i++;
    while (!this.atEnd()) {
      const c = this.peek();
      if (!isTchar(c) && c !== ':' && c !== '/') break;
      this.i++;
    }
    return new SfToken(this.s.slice(start, this.i));
  }

  bytes(): Uint8Array {
    this.i++;
    const end = this.s.indexOf(':', this.i);
    if (end < 0) this.fail();
    const text = this.s.slice(this.i, end);
    if (/[^A-Za-z0-9+/=]/.test(text)) this.fail();
    const bytes = base64Decode(text);
    if (!bytes) this.fail();
    this.i = end + 1;
    return bytes;
  }

  boolean(): boolean {
    this.i++;
    const c = this.s[this.i++];
    if (c === '1') return true;
    if (c === '0') return false;
    return this.fail();
  }
}

function run<T>(input: string, options: ParseOptions, f: (p: Parser) => T): T {
  const p = new Parser(input, options.code ?? 'request_invalid');
  p.begin();
  const result = f(p);
  p.finish();
  return result;
}

/** Parses a dictionary field value (RFC 8941 §4.2.2). */
export function parseDictionary(input: string, options: ParseOptions = {}): SfDictionary {
  return run(input, options, (p) => p.dictionary(options.rejectDuplicateKeys ?? false));
}

/** Parses a list field value (RFC 8941 §4.2.1). */
export function parseList(input: string, options: ParseOptions = {}): SfList {
  return run(input, options, (p) => p.list());
}

/** Parses an item field value (RFC 8941 §4.2.3). */
export function parseItem(input: string, options: ParseOptions = {}): SfItem {
  return run(input, options, (p) => p.item());
}

/** Parses a lone inner list with its parameters, e.g. a Signature-Input member value. */
export function parseInnerList(input: string, options: ParseOptions = {}): SfInnerList {
  return run(input, options, (p) => p.innerList());
}

/** Parses an sf-string item without parameters and returns its text. */
export function parseSfString(input: string, options: ParseOptions = {}): string {
  const item = parseItem(input, options);
  if (typeof item.value !== 'string' || item.params.size > 0) {
    throw new NexusError(options.code ?? 'request_invalid');
  }
  return item.value;
}

/** Parses a byte-sequence item without parameters and returns its bytes. */
export function parseByteSequence(input: string, options: ParseOptions = {}): Uint8Array {
  const item = parseItem(input, options);
  if (!(item.value instanceof Uint8Array) || item.params.size > 0) {
    throw new NexusError(options.code ?? 'request_invalid');
  }
  return item.value;
}

function invalid(): never {
  throw new NexusError('request_invalid');
}

/** Serializes a bare item. Throws `request_invalid` for a value that cannot be serialized. */
export function serializeBareItem(value: BareItem): string {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) > MAX_INT) invalid();
    return String(value);
  }
  if (typeof value === 'string') return serializeSfString(value);
  if (typeof value === 'boolean') return value ? '?1' : '?0';
  if (value instanceof Uint8Array) return serializeByteSequence(value);
  if (value instanceof SfToken) {
    if (!TOKEN_RE.test(value.value)) invalid();
    return value.value;
  }
  if (value instanceof SfDecimal) {
    const v = Math.round(value.value * 1000) / 1000;
    if (!Number.isFinite(v) || Math.abs(Math.trunc(v)) > 999_999_999_999) invalid();
    let text = v.toFixed(3).replace(/0+$/, '');
    if (text.endsWith('.')) text += '0';
    return text === '-0.0' ? '0.0' : text;
  }
  return invalid();
}

/** Serializes an sf-string (printable ASCII only; `"` and `\` escaped). */
export function serializeSfString(value: string): string {
  let out = '"';
  for (const c of value) {
    const code = c.charCodeAt(0);
    if (c.length !== 1 || code < 0x20 || code > 0x7e) invalid();
    out += c === '"' || c === '\\' ? `\\${c}` : c;
  }
  return `${out}"`;
}

/** Serializes a byte sequence (`:base64:`). */
export function serializeByteSequence(value: Uint8Array): string {
  return `:${base64Encode(value)}:`;
}

/** Serializes a key (throws `request_invalid` if not an sf-key). */
export function serializeKey(key: string): string {
  if (!KEY_RE.test(key)) invalid();
  return key;
}

/** Serializes parameters (`;a=1;b`). */
export function serializeParams(params: SfParameters): string {
  let out = '';
  for (const [k, v] of params) {
    out += `;${serializeKey(k)}`;
    if (v !== true) out += `=${serializeBareItem(v)}`;
  }
  return out;
}

/** Serializes an item with its parameters. */
export function serializeItem(item: SfItem): string {
  return serializeBareItem(item.value) + serializeParams(item.params);
}

/** Serializes an inner list with its parameters. */
export function serializeInnerList(list: SfInnerList): string {
  return `(${list.items.map(serializeItem).join(' ')})${serializeParams(list.params)}`;
}

/** Serializes a list member. */
export function serializeMember(member: SfMember): string {
  return member.kind === 'inner' ? serializeInnerList(member) : serializeItem(member);
}

/** Serializes a list. */
export function serializeList(list: SfList): string {
  return list.map(serializeMember).join(', ');
}

/** Serializes a dictionary. */
export function serializeDictionary(dict: SfDictionary): string {
  const parts: string[] = [];
  for (const [k, m] of dict) {
    if (m.kind === 'item' && m.value === true)
      parts.push(serializeKey(k) + serializeParams(m.params));
    else parts.push(`${serializeKey(k)}=${serializeMember(m)}`);
  }
  return parts.join(', ');
}

/** Builds an item. */
export function sfItem(value: BareItem, params: Iterable<[string, BareItem]> = []): SfItem {
  return { kind: 'item', value, params: new Map(params) };
}
