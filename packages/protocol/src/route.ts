/**
 * Service routing and path normalisation: `/{service}/{path...}?{query}` (spec §7). One
 * definition for every party: the proxy routes with it, and agents (the SDK's
 * `agent.fetch`, the `nexus run` sidecar) check their targets with it before signing.
 *
 * MUST: a path that could mean something else upstream than what policy saw is rejected,
 * never "fixed": encoded slashes, backslashes and dots, `.`/`..` segments, empty segments,
 * control characters and bad percent-encoding all fail with `path_invalid`. What remains is
 * decoded for policy matching and forwarded byte for byte as received.
 */
import { NexusError } from './errors.js';

/** Service names: lower-case letters, digits and hyphens; `v1` and `.well-known` are reserved. */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set(['v1', '.well-known']);

export interface Route {
  readonly service: string;
  /** The path after the service, exactly as received (still percent-encoded), starting with `/` or empty. */
  readonly rawPath: string;
  /** `rawPath` percent-decoded, for policy matching; always starts with `/`. */
  readonly path: string;
  /** The raw query string without `?`, or '' when absent. */
  readonly query: string;
}

// Encoded `/`, `\` and `.`: decoding them could turn one segment into several or into `..`.
const FORBIDDEN_ENCODED = /%(2f|5c|2e)/i;
// Raw characters allowed in a path: RFC 3986 pchar plus `/` (no space, no non-ASCII, no `\`).
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const ENCODED_CONTROL = /%(0[0-9a-f]|1[0-9a-f]|7f)/i;

/**
 * Parses an origin-form request target into a route.
 *
 * @throws NexusError `request_invalid` for a target that is not origin-form,
 *   `path_invalid` for anything that could escape or be read differently upstream,
 *   `service_unknown` for a malformed service name (an unknown but well-formed name is the
 *   caller's check).
 */
export function parseRoute(target: string): Route {
  if (!target.startsWith('/') || target.startsWith('//')) {
    // Absolute-form (`http://host/...`), authority-form and `//host` targets are never routed.
    throw new NexusError(target.startsWith('//') ? 'path_invalid' : 'request_invalid');
  }
  const q = target.indexOf('?');
  const pathPart = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f-\uffff#]/.test(query)) throw new NexusError('request_invalid');

  const slash = pathPart.indexOf('/', 1);
  const service = slash === -1 ? pathPart.slice(1) : pathPart.slice(1, slash);
  const rawPath = slash === -1 ? '' : pathPart.slice(slash);
  if (!SERVICE_NAME.test(service) || RESERVED_SERVICE_NAMES.has(service)) {
    throw new NexusError('service_unknown');
  }
  if (!PATH_CHARS.test(rawPath) || BAD_PERCENT.test(rawPath)) throw new NexusError('path_invalid');
  if (FORBIDDEN_ENCODED.test(rawPath) || ENCODED_CONTROL.test(rawPath)) {
    throw new NexusError('path_invalid');
  }
  const segments = rawPath.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    // An empty segment is allowed only as a trailing slash.
    if (s === '' && i !== segments.length - 1) throw new NexusError('path_invalid');
    // `..;x` and `..%3Bx` are `..` to servers that strip matrix parameters (Tomcat, Jetty).
    const bare = (s ?? '').split(/;|%3[bB]/)[0];
    if (bare === '.' || bare === '..') throw new NexusError('path_invalid');
  }
  let path: string;
  try {
    path = decodeURIComponent(rawPath) || '/';
  } catch {
    throw new NexusError('path_invalid');
  }
  if (!path.startsWith('/')) path = `/${path}`;
  return { service, rawPath, path, query };
}

/**
 * The request target an agent sends for `service` and `path` (`path` may carry a
 * `?query`; a path not starting with `/` or `?` gets a leading `/`), checked exactly as the
 * proxy will check it. Clients call this before they sign, so a service name outside the
 * syntax, a reserved prefix (`v1`, `.well-known`: the Authority's) or a path that could
 * escape its service (`..`, `%2e%2e`, `\`, `//`, ...) is refused locally and never
 * reaches, signed, an Authority route or another service.
 *
 * MUST: the returned target is one the URL parser leaves unchanged (no dot segment in any
 * spelling, no backslash, tab or newline), so what is signed is what is sent.
 *
 * @throws NexusError `service_unknown` (service syntax or reserved name), `path_invalid`,
 *   `request_invalid` (a query with a space, control, non-ASCII character or `#`).
 * @example
 * serviceTarget('github', '/repos/acme/app/issues?state=open'); // '/github/repos/acme/app/issues?state=open'
 * serviceTarget('github', '/../v1/leases/renew'); // throws path_invalid
 */
export function serviceTarget(service: string, path: string): string {
  if (
    typeof service !== 'string' ||
    !SERVICE_NAME.test(service) ||
    RESERVED_SERVICE_NAMES.has(service)
  ) {
    throw new NexusError('service_unknown', 'not a valid service name');
  }
  if (typeof path !== 'string') throw new NexusError('path_invalid');
  const rest = path === '' || path.startsWith('/') || path.startsWith('?') ? path : `/${path}`;
  const target = `/${service}${rest}`;
  const route = parseRoute(target);
  // The service is one segment of the syntax above, so the route cannot name another.
  if (route.service !== service) throw new NexusError('service_unknown');
  return target;
}
