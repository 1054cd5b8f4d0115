// RFC 8785 (JCS) canonical JSON: object keys sorted by UTF-16 code units, no whitespace,
// numbers in ECMAScript shortest form, strings as JSON.stringify escapes them. Used for
// hashes that must not depend on key order (the policy hash; audit records may reuse it).

/** A value canonicalJson accepts. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | readonly JsonValue[]
  | { readonly [k: string]: JsonValue | undefined };

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Serialises `value` canonically. Object members whose value is `undefined` are omitted.
 *
 * @throws TypeError on non-finite numbers, lone surrogates, or values JSON cannot hold.
 * @example canonicalJson({ b: 1, a: [true, 'x'] }) === '{"a":[true,"x"],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
      return JSON.stringify(value); // ES Number-to-String, as RFC 8785 requires (-0 -> 0)
    case 'string':
      if (LONE_SURROGATE.test(value))
        throw new TypeError('canonicalJson: lone surrogate in string');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v: unknown) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError('canonicalJson: only plain objects and arrays');
      }
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${canonicalJson(k)}:${canonicalJson(v)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: unsupported ${typeof value}`);
  }
}
