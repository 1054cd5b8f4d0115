/**
 * Base-URL mode of `nexus run` (issue 11): the variables vendor SDKs read
 * (`OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`, ...), as the node declares them per service
 * (`services.<name>.env`), pointed at the sidecar, with a dummy key where an SDK insists on
 * one. The sidecar strips the dummy key from every request; the proxy injects the real
 * credential. The child never holds a credential, only this well-known placeholder.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentService } from '@nexus-proxy/sdk';
import { CliError } from './admin-client.js';

/**
 * The placeholder key given to SDKs that refuse to start without one. Not a secret (it is
 * documented); the sidecar removes it wherever it appears in a request's header fields or
 * query, so no upstream ever receives it.
 */
export const DUMMY_KEY = 'nexus-dummy-key-replaced-by-nexus';

/** `--env`: `all` (the default: every service the node lists for this agent), `none`, or names. */
export function selectEnvServices(
  spec: string,
  services: readonly AgentService[],
  warn: (line: string) => void,
): AgentService[] {
  const trimmed = spec.trim();
  if (trimmed === 'none' || trimmed === '') return [];
  const withEnv = services.filter((s) => Object.keys(s.env).length > 0);
  if (trimmed === 'all') {
    // Two services claiming one variable (two OpenAI-compatible APIs): the first by name
    // keeps it, and the operator is told to choose with --env.
    const taken = new Map<string, string>();
    const out: AgentService[] = [];
    for (const s of withEnv) {
      const clash = Object.keys(s.env).find((k) => taken.has(k));
      if (clash !== undefined) {
        warn(
          `nexus: warning: ${s.name} and ${taken.get(clash)} both set ${clash}; ${s.name} left out (choose with --env) (env_conflict)`,
        );
        continue;
      }
      for (const k of Object.keys(s.env)) taken.set(k, s.name);
      out.push(s);
    }
    return out;
  }
  const names = [...new Set(trimmed.split(',').map((n) => n.trim()))].filter((n) => n !== '');
  const out: AgentService[] = [];
  const taken = new Map<string, string>();
  for (const name of names) {
    const s = services.find((x) => x.name === name);
    if (s === undefined) {
      throw new CliError(
        `--env: the node lists no service "${name}" this agent may use (service_unknown)`,
        'service_unknown',
      );
    }
    if (Object.keys(s.env).length === 0) {
      throw new CliError(
        `--env: service "${name}" declares no environment variables (add env: to it in nexus.yaml, or call $NEXUS_PROXY/${name}/...) (env_undeclared)`,
        'env_undeclared',
      );
    }
    for (const k of Object.keys(s.env)) {
      const other = taken.get(k);
      if (other !== undefined) {
        throw new CliError(
          `--env: ${name} and ${other} both set ${k} (env_conflict)`,
          'env_conflict',
        );
      }
      taken.set(k, name);
    }
    out.push(s);
  }
  return out;
}

/** The variables for the chosen services, with `sidecarUrl` the sidecar's base URL. */
export function baseUrlEnvironment(
  services: readonly AgentService[],
  sidecarUrl: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of services) {
    for (const [k, template] of Object.entries(s.env)) {
      // The node validated names and templates; anything else is not ours to set.
      if (!/^[A-Z_][A-Z0-9_]*$/.test(k) || k.startsWith('NEXUS_')) continue;
      if (template === '{dummy_key}') out[k] = DUMMY_KEY;
      else if (/^\{base_url\}(\/[^\s]*)?$/.test(template)) {
        out[k] = `${sidecarUrl}/${s.name}${template.slice('{base_url}'.length)}`;
      }
    }
  }
  return out;
}

/**
 * MUST: the dummy key never leaves the sidecar. Header fields holding it are dropped (the
 * proxy injects the real credential); query parameters holding it are removed.
 */
export function holdsDummyKey(value: string): boolean {
  return value.includes(DUMMY_KEY);
}

/** The query without the parameters that carry the dummy key (raw, as sent). */
export function queryWithoutDummyKey(query: string): string {
  if (!query.includes(DUMMY_KEY)) return query;
  return query
    .split('&')
    .filter((p) => !p.includes(DUMMY_KEY))
    .join('&');
}

/** Loopback names the child reaches directly (the sidecar itself, local servers). */
export const NO_PROXY = '127.0.0.1,localhost,::1';

/** Where the run CA's certificate was written for the child. */
export interface CaFiles {
  readonly dir: string;
  /** The run CA alone (NODE_EXTRA_CA_CERTS adds it to Node's roots). */
  readonly ca: string;
  /** The run CA plus this host's roots: for variables that replace the trust store. */
  readonly bundle: string;
}

/** The system's root bundles, in the order OpenSSL-based distributions keep them. */
const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/cert.pem',
];

/**
 * Writes the CA certificate (never its key: there is no file of it) into a fresh private
 * directory, alone and bundled with the roots the child trusted before (its SSL_CERT_FILE,
 * else the system bundle), so that the variables which replace a trust store do not cut
 * the child off from the loopback or direct HTTPS servers it already used.
 */
export async function writeCaFiles(
  caPem: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<CaFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'nexus-run-ca-'));
  const ca = join(dir, 'ca.pem');
  const bundle = join(dir, 'bundle.pem');
  await writeFile(ca, caPem, { mode: 0o644 });
  let roots = '';
  for (const path of [env.SSL_CERT_FILE, ...SYSTEM_BUNDLES]) {
    if (path === undefined || path === '') continue;
    try {
      roots = await readFile(path, 'utf8');
      break;
    } catch {
      // next candidate
    }
  }
  await writeFile(bundle, `${caPem}${roots === '' ? '' : `\n${roots}`}`, { mode: 0o644 });
  return { dir, ca, bundle };
}

/**
 * The forward-proxy variables: HTTP(S)_PROXY in both spellings (curl reads only the
 * lower-case http_proxy), NO_PROXY for loopback, Node's opt-in, and the CA variables of
 * OpenSSL, Python, curl, the AWS SDKs and git when the run has a CA.
 */
export function forwardProxyEnvironment(
  sidecarUrl: string,
  ca: CaFiles | undefined,
): Record<string, string> {
  const out: Record<string, string> = {
    HTTP_PROXY: sidecarUrl,
    HTTPS_PROXY: sidecarUrl,
    http_proxy: sidecarUrl,
    https_proxy: sidecarUrl,
    NO_PROXY,
    no_proxy: NO_PROXY,
    NODE_USE_ENV_PROXY: '1',
  };
  if (ca !== undefined) {
    out.NODE_EXTRA_CA_CERTS = ca.ca;
    for (const k of [
      'SSL_CERT_FILE',
      'REQUESTS_CA_BUNDLE',
      'CURL_CA_BUNDLE',
      'AWS_CA_BUNDLE',
      'GIT_SSL_CAINFO',
    ]) {
      out[k] = ca.bundle;
    }
  }
  return out;
}
