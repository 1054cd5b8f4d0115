// The HTTP message model used for signing and verifying: method, absolute URL, status and
// header fields in either node-style record or [name, value] pair form.

/** Header fields: a node-style record (values may be arrays) or a list of name/value pairs. */
export type HeaderInput =
  | Readonly<Record<string, string | readonly string[] | undefined>>
  | ReadonlyArray<readonly [string, string]>;

/** An HTTP request (method + absolute url) or response (status). */
export interface HttpMessage {
  method?: string;
  /** The absolute target URI, e.g. `https://proxy.example/github/repos?x=1`. */
  url?: string;
  status?: number;
  headers: HeaderInput;
}

/**
 * Returns every field line of `name` (case-insensitive) in order, or undefined when the
 * field is absent.
 */
export function fieldLines(headers: HeaderInput, name: string): string[] | undefined {
  const lname = name.toLowerCase();
  const out: string[] = [];
  if (Array.isArray(headers)) {
    for (const pair of headers as ReadonlyArray<readonly [string, string]>) {
      if (pair[0].toLowerCase() === lname) out.push(pair[1]);
    }
  } else {
    const rec = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
    for (const key of Object.keys(rec)) {
      if (key.toLowerCase() !== lname) continue;
      const v = rec[key];
      if (v === undefined) continue;
      if (typeof v === 'string') out.push(v);
      else out.push(...v);
    }
  }
  return out.length > 0 ? out : undefined;
}

/**
 * The combined value of a field per RFC 9421 §2.1: each line trimmed of leading and
 * trailing whitespace, lines joined with `, `. Undefined when absent.
 */
export function fieldValue(headers: HeaderInput, name: string): string | undefined {
  const lines = fieldLines(headers, name);
  return lines?.map(trimOWS).join(', ');
}

/** Trims leading/trailing SP and HTAB (and obsolete line folding, replaced by one SP). */
export function trimOWS(value: string): string {
  return value.replace(/\r?\n[ \t]+/g, ' ').replace(/^[ \t]+|[ \t]+$/g, '');
}

/** The raw parts of an absolute URL, taken from the string without normalisation. */
export interface UrlParts {
  scheme: string;
  authority: string;
  path: string;
  /** Query without the leading `?`, or undefined when absent. */
  query: string | undefined;
}

const URL_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/;

/**
 * Splits an absolute URL into scheme, authority, path and query, keeping the bytes of the
 * path and query as given (so signer and verifier see the same text). Undefined if invalid.
 */
export function splitUrl(url: string): UrlParts | undefined {
  const m = URL_RE.exec(url);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  let authority = m[2]!.toLowerCase();
  if (authority === '' || authority.includes('@')) return undefined;
  if (scheme === 'https' && authority.endsWith(':443')) authority = authority.slice(0, -4);
  if (scheme === 'http' && authority.endsWith(':80')) authority = authority.slice(0, -3);
  const path = m[3] === '' ? '/' : m[3]!;
  return { scheme, authority, path, query: m[4] };
}
