// RFC 8785 JSON Canonicalization Scheme (JCS): the byte-exact form every audit record is
// hashed in.
//
// Why our own code and not a library: the hash chain's integrity rests on this function
// producing the same text on every implementation, forever. It is ~40 lines over
// ECMAScript's own number and string serialisation (which RFC 8785 adopts verbatim), so
// a reviewer can check it against the RFC in one sitting, and it has no dependency to
// audit or pin.
import { NexusError } from '@nexus-proxy/protocol';

/** A JSON value accepted by {@link canonicalize}. */
export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue | undefined };

/**
 * Serialises `value` per RFC 8785: object members sorted by the UTF-16 code units of
 * their names, no whitespace, ECMAScript number form (`-0` as `0`), JSON.stringify string
 * escaping. Object members whose value is `undefined` are omitted (as JSON.stringify does).
 *
 * @throws NexusError `internal_error` for a non-finite number, `undefined` inside an
 *   array, a lone surrogate, or anything that is not plain JSON data (Date, Map, bigint, ...).
 * @example
 * canonicalize({ b: 1, a: [true, null] }) // '{"a":[true,null],"b":1}'
 */
export function canonicalize(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw invalid('non-finite number');
      // ECMAScript Number::toString is the RFC 8785 number form; JSON.stringify(-0) is "0".
      return JSON.stringify(value);
    case 'string':
      return string(value);
    case 'object': {
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          const v: unknown = value[i];
          if (v === undefined) throw invalid('undefined inside an array');
          out += (i === 0 ? '' : ',') + canonicalize(v);
        }
        return out + ']';
      }
      const members = canonicalMembers(value as Record<string, unknown>);
      let out = '{';
      for (let i = 0; i < members.length; i++) out += (i === 0 ? '' : ',') + members[i]![1];
      return out + '}';
    }
    default:
      throw invalid(`unsupported type ${typeof value}`);
  }
}

/**
 * The members of a plain object in canonical order (undefined values left out), each as
 * its `"name":value` text: lets a caller splice extra members in without serialising the
 * object twice (audit/chain.ts). `'{' + texts.join(',') + '}'` is {@link canonicalize}.
 *
 * @throws NexusError `internal_error` as {@link canonicalize}.
 */
export function canonicalMembers(value: Record<string, unknown>): [name: string, text: string][] {
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) throw invalid('not a plain object');
  // Default sort compares UTF-16 code units, exactly what RFC 8785 §3.2.3 requires.
  const keys = Object.keys(value).sort();
  const out: [string, string][] = [];
  for (const k of keys) {
    const v = value[k];
    if (v !== undefined) out.push([k, string(k) + ':' + canonicalize(v)]);
  }
  return out;
}

function string(s: string): string {
  // I-JSON (RFC 7493) forbids lone surrogates; JSON.stringify would escape them silently.
  // isWellFormed (ES2024) is false exactly when the string has a lone surrogate.
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw invalid('lone surrogate in a string');
  }
  return JSON.stringify(s);
}

function invalid(what: string): NexusError {
  return new NexusError('internal_error', `value cannot be canonicalised: ${what}`);
}
