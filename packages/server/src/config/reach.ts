/**
 * How unmodified agents reach a service (issue 11): the environment variables its official
 * SDKs read (`env`, base-URL mode) and the host names it owns (`hosts`, forward-proxy mode).
 * `nexus run` learns both from the node (`GET /v1/agent/services`) for the services the
 * agent's policy can allow, and sets them up for the child.
 *
 * An `env` value is one of two run-time templates, never free text: `{base_url}` followed by
 * an optional path (the sidecar's URL for this service: `http://127.0.0.1:PORT/<service>`)
 * or `{dummy_key}` (a placeholder the SDK insists on; the sidecar strips it, the proxy
 * injects the real credential). MUST NOT: a config entry sets anything else in an agent's
 * environment (no `LD_PRELOAD`, no `NODE_OPTIONS`, no proxy or CA variable).
 */
import { z } from 'zod';

/** The value templates an `env` entry may hold. */
export const ENV_VALUE_RE = /^(\{base_url\}(\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?|\{dummy_key\})$/;

/** Variables a service may not claim: ours, the forward proxy's and the loader's. */
const RESERVED_ENV_RE =
  /^(NEXUS_.*|PATH|HOME|SHELL|USER|LD_.*|DYLD_.*|NODE_.*|PYTHON.*|(HTTPS?|ALL|NO|FTP)_PROXY|(https?|all|no|ftp)_proxy|SSL_CERT_.*|NODE_EXTRA_CA_CERTS|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|AWS_CA_BUNDLE|GIT_SSL_CAINFO)$/;

/** `env` of a service: variable name -> `{base_url}[/path]` or `{dummy_key}`. */
export const serviceEnvSchema = z
  .record(
    z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'must be an upper-case environment variable name')
      .refine((n) => !RESERVED_ENV_RE.test(n), 'this variable is reserved'),
    z.string().regex(ENV_VALUE_RE, 'must be "{base_url}", "{base_url}/<path>" or "{dummy_key}"'),
  )
  .optional();

/** A lower-case DNS name (no port, no wildcard): the host a service owns. */
const HOST_RE =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** `hosts` of a service: the DNS names whose requests the forward proxy routes to it. */
export const serviceHostsSchema = z
  .array(
    z
      .string()
      .transform((s) => s.toLowerCase())
      .pipe(z.string().regex(HOST_RE, 'must be a DNS host name without port or wildcard')),
  )
  .transform((a) => [...new Set(a)])
  .optional();

/** One service as `nexus run` sees it (the body of `GET /v1/agent/services`). */
export interface AgentReachService {
  readonly name: string;
  readonly env: Readonly<Record<string, string>>;
  readonly hosts: readonly string[];
  /** The upstream's path (`/api/1.0` for `https://app.asana.com/api/1.0`), `''` for none. */
  readonly path_prefix: string;
}

/** The reach entry of a configured service. */
export function reachOf(service: {
  readonly name: string;
  readonly upstream: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly hosts?: readonly string[];
}): AgentReachService {
  const path = new URL(service.upstream).pathname.replace(/\/+$/, '');
  return {
    name: service.name,
    env: { ...service.env },
    hosts: [...(service.hosts ?? [])],
    path_prefix: path,
  };
}

/** Two services claiming one host: each pair, for the config loader's issues. */
export function duplicateHosts(
  services: Readonly<Record<string, { readonly hosts?: readonly string[] }>>,
): { host: string; services: [string, string] }[] {
  const owner = new Map<string, string>();
  const out: { host: string; services: [string, string] }[] = [];
  for (const [name, s] of Object.entries(services)) {
    for (const h of new Set(s.hosts ?? [])) {
      const first = owner.get(h);
      if (first === undefined) owner.set(h, name);
      else out.push({ host: h, services: [first, name] });
    }
  }
  return out;
}

/**
 * The services an allow (or approve) rule could open to this agent (by name or role; methods, paths,
 * intent and time are left to the proxy, which decides each request). A service a deny
 * rule closes for good is still listed: listing grants nothing.
 */
export function reachableServices(
  services: Readonly<Record<string, Parameters<typeof reachOf>[0]>>,
  rulesFor: (service: string) => readonly {
    readonly effect: 'allow' | 'deny' | 'approve';
    readonly match: { readonly agents?: readonly string[]; readonly roles?: readonly string[] };
  }[],
  agent: string,
  roles: readonly string[],
): AgentReachService[] {
  return Object.values(services)
    .filter((s) =>
      rulesFor(s.name).some(
        (r) =>
          // An approve rule opens the service too (each request waits for an operator).
          r.effect !== 'deny' &&
          (r.match.agents === undefined || r.match.agents.includes(agent)) &&
          (r.match.roles === undefined || r.match.roles.some((x) => roles.includes(x))),
      ),
    )
    .map(reachOf)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
