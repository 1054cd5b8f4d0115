/**
 * Parameter names an upstream could read differently from Nexus: method overrides
 * (`_method=DELETE`) in the query or the body, and look-alikes of a query parameter a
 * mechanic injects the credential into (`API_KEY`, `api_key[]`, `api.key`, `api+key`,
 * `api_key%00` next to `api_key`).
 *
 * Nexus never alters the signed parts of a request (target and body, covered by the
 * signature and the digest), so such a request is refused, never rewritten:
 * `method_override_refused` (policy decided on the real method; an upstream honouring the
 * override would act on another one) and `query_param_reserved` (the upstream could take
 * the agent's value, or both, for the credential).
 *
 * A name "could be read as" another when one of the readings servers are known to apply
 * makes them equal: percent-decoding (repeated: some servers decode twice) with `+` as a
 * space, truncation at NUL (C strings), array suffixes (`name[]`, `name[x]`: PHP, qs, Rack),
 * PHP's mapping of space, `.` and an unmatched `[` to `_`, case folding (ASP.NET, and any
 * case-insensitive lookup), Unicode compatibility forms (NFKC), surrounding whitespace, and
 * `-` for `_`. Pairs are split on `&` and `;` (Rack and older Python split on both).
 * Only names are compared: `payment_method=card` or `method=instant` are ordinary fields.
 */
import { NexusError } from '@nexus-proxy/protocol';

/** Canonical names of the method-override parameters frameworks honour. */
const OVERRIDE_NAMES: ReadonlySet<string> = new Set([
  '_method', // Rails (Rack::MethodOverride), Laravel/Symfony, Spring, Express method-override, Go
  'x_http_method_override', // ASP.NET MVC reads it from the query and the form too
  'x_http_method',
  'x_method_override',
  '_httpmethod', // Salesforce: `_HttpMethod` in the query, a form or a multipart body
]);

const MAX_DECODE_ROUNDS = 3;

function decodeOnce(s: string): string {
  const spaced = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    // Not UTF-8 (or a stray `%`): decode the valid escapes byte by byte, as lenient servers do.
    return spaced.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) =>
      String.fromCharCode(parseInt(h, 16)),
    );
  }
}

function fold(s: string): string {
  return s
    .normalize('NFKC')
    .toUpperCase()
    .toLowerCase()
    .trim()
    .replace(/[\s.+-]/g, '_');
}

/**
 * The canonical names a server might read a raw parameter name as.
 *
 * @example nameReadings('API%2Ekey%5B%5D') // includes 'api_key'
 */
export function nameReadings(raw: string): Set<string> {
  // The common case, a plain lower-case name, reads only as itself.
  if (/^[a-z0-9_]*$/.test(raw)) return new Set([raw]);
  const out = new Set<string>();
  let current = raw;
  for (let round = 0; round <= MAX_DECODE_ROUNDS; round++) {
    const cut = current.split('\0')[0] ?? '';
    out.add(fold(cut));
    out.add(fold(cut.split('[')[0] ?? ''));
    out.add(fold(cut.replace(/\[/g, '_')));
    if (round === MAX_DECODE_ROUNDS) break;
    const next = decodeOnce(current);
    if (next === current) break;
    current = next;
  }
  return out;
}

/** The canonical form of a configured parameter name (plain ASCII). */
export function canonicalName(name: string): string {
  return fold(name);
}

/** The raw (still encoded) names of an `a=1&b;c=3` string. */
export function rawParamNames(text: string): string[] {
  const names: string[] = [];
  for (const pair of text.split(/[&;]/)) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    names.push(eq === -1 ? pair : pair.slice(0, eq));
  }
  return names;
}

function isOverride(raw: string): boolean {
  for (const r of nameReadings(raw)) if (OVERRIDE_NAMES.has(r)) return true;
  return false;
}

/**
 * Refuses a query holding a method override, or a parameter that could be read as one
 * of `injected` (the mechanic's credential parameters).
 *
 * @throws NexusError `method_override_refused`, `query_param_reserved`
 */
export function checkQuery(query: string, injected: readonly string[]): void {
  if (query === '') return;
  const reserved = new Map(injected.map((p) => [canonicalName(p), p]));
  for (const raw of rawParamNames(query)) {
    const readings = nameReadings(raw);
    for (const r of readings) {
      if (OVERRIDE_NAMES.has(r)) {
        throw new NexusError('method_override_refused', undefined, {
          detail: 'the query has a method-override parameter (_method or X-HTTP-Method-Override)',
        });
      }
      const param = reserved.get(r);
      if (param !== undefined) {
        // The configured name, never the agent's spelling of it.
        throw new NexusError('query_param_reserved', undefined, {
          detail: `a query parameter could be read as "${param}", which carries the service's credential`,
        });
      }
    }
  }
}

/** `type/subtype` of a Content-Type value, lower case, and its parameters. */
function mediaType(contentType: string): { type: string; params: Map<string, string> } {
  const [type = '', ...rest] = contentType.split(';');
  const params = new Map<string, string>();
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq === -1) continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    params.set(p.slice(0, eq).trim().toLowerCase(), v);
  }
  return { type: type.trim().toLowerCase(), params };
}

// The field names of a multipart part's headers: `name="x"`, `name=x`, `name*=utf-8''x`.
const PART_NAME = /(?:^|[;\s])name(\*?)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/gi;

function multipartNames(body: Buffer, boundary: string): string[] {
  const names: string[] = [];
  const delimiter = Buffer.from(`--${boundary}`, 'latin1');
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const start = at + delimiter.length;
    // A part's header block ends at the first empty line (CRLF or, leniently, LF).
    const crlf = body.indexOf('\r\n\r\n', start);
    const lf = body.indexOf('\n\n', start);
    const candidates = [crlf, lf].filter((i) => i !== -1);
    const end = candidates.length === 0 ? body.length : Math.min(...candidates);
    // Header lines continued on the next (folded, as PHP still joins them) are one line.
    const block = body
      .subarray(start, Math.min(end, start + 16 * 1024))
      .toString('latin1')
      .replace(/\r?\n[ \t]+/g, ' ');
    for (const line of block.split(/\r?\n/)) {
      if (!/^\s*content-disposition\s*:/i.test(line)) continue;
      for (const m of line.matchAll(PART_NAME)) {
        let v = m[2] ?? '';
        if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
        // RFC 5987 `name*=charset'lang'value`: the value is percent-encoded.
        if (m[1] === '*') v = v.slice(v.lastIndexOf("'") + 1);
        names.push(v);
      }
    }
    at = body.indexOf(delimiter, start);
  }
  return names;
}

// JSON member names are case-sensitive to the frameworks that read `_method` from JSON
// (Laravel, Express method-override): a body holding none of these cannot spell it.
const JSON_HINTS = ['method', 'Method', 'METHOD', '\\u'].map((h) => Buffer.from(h));

function jsonKeys(body: Buffer): string[] {
  // Parsing is the costly part: only a body that could spell the name is parsed.
  if (!JSON_HINTS.some((h) => body.includes(h))) return [];
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return [];
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? Object.keys(value)
    : [];
}

/**
 * Refuses a body that carries a method override as a field, read as the frameworks read
 * it: a form when the type is `application/x-www-form-urlencoded`, missing or empty (Rack
 * parses a POST without a type as a form), a `multipart/form-data` part name (folded
 * header lines joined, as PHP does), or a top-level key of a JSON object whenever the
 * type holds `/json` or `+json` anywhere (Laravel's test: `text/json`, `x/json`,
 * `text/plain; x=/json` all count).
 *
 * @throws NexusError `method_override_refused`
 */
export function checkBody(contentType: string | undefined, body: Buffer): void {
  if (body.length === 0) return;
  const raw = (contentType ?? '').toLowerCase();
  const { type, params } = mediaType(contentType ?? ''); // the boundary keeps its case
  const readings: [where: string, names: () => string[]][] = [];
  if (type === '' || type === 'application/x-www-form-urlencoded') {
    readings.push(['form body', () => rawParamNames(body.toString('utf8'))]);
  }
  if (type === 'multipart/form-data') {
    const boundary = params.get('boundary');
    readings.push(['multipart body', () => (boundary ? multipartNames(body, boundary) : [])]);
  }
  if (raw.includes('/json') || raw.includes('+json')) {
    readings.push(['JSON body', () => jsonKeys(body)]);
  }
  for (const [where, names] of readings) {
    for (const name of names()) {
      if (isOverride(name)) {
        throw new NexusError('method_override_refused', undefined, {
          detail: `the ${where} has a method-override field (_method or X-HTTP-Method-Override)`,
        });
      }
    }
  }
}
