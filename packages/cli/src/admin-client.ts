/**
 * How CLI commands reach a running node: the admin listener from `NEXUS_ADDR` or
 * `nexus.yaml`, and an operator token from `NEXUS_OPERATOR_TOKEN` or `.nexus/operator.token`
 * beside the config. With both variables set, no config file is needed.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { loadConfig, operatorTokenFile, type Config } from '@nexus-proxy/server/config';

export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 'cli_error',
  ) {
    super(message);
  }
}

export interface AdminClient {
  /** The node's config, when a config file was read (not with NEXUS_ADDR alone). */
  readonly config: Config | undefined;
  readonly baseUrl: string;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  raw(method: string, path: string): Promise<Response>;
}

export function operatorTokenPath(config: Config): string {
  return operatorTokenFile(config);
}

export async function readOperatorToken(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string> {
  const fromEnv = env.NEXUS_OPERATOR_TOKEN;
  if (fromEnv) return fromEnv.trim();
  try {
    return (await readFile(operatorTokenPath(config), 'utf8')).trim();
  } catch {
    throw new CliError(
      `no operator token: set NEXUS_OPERATOR_TOKEN or create ${operatorTokenPath(config)} (nexus init writes it)`,
    );
  }
}

export function adminBaseUrl(config: Config): string {
  const { host, port } = config.admin.listen;
  const h = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return `http://${h}:${port}`;
}

export async function configFrom(
  path: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<Config> {
  if (!existsSync(path)) {
    throw new CliError(`no config at ${path}: run \`nexus init\` first, or pass --config FILE`);
  }
  return loadConfig(path, { env });
}

/**
 * The admin API base URL from `NEXUS_ADDR` (`http://host:port`, or `host:port`), or the
 * older `NEXUS_ADMIN_URL`; undefined when neither is set.
 */
export function adminAddrFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const name = env.NEXUS_ADDR !== undefined ? 'NEXUS_ADDR' : 'NEXUS_ADMIN_URL';
  const raw = (env.NEXUS_ADDR ?? env.NEXUS_ADMIN_URL)?.trim();
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new CliError(`${name} must be the admin API address, e.g. http://127.0.0.1:7071`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`${name} must be an http or https URL, e.g. http://127.0.0.1:7071`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

export async function adminClient(
  configPath: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<AdminClient> {
  const addr = adminAddrFromEnv(env);
  // An address and a token from the environment are enough; a config file that is there
  // is still read (for the Authority URL that `agent enroll -o` writes).
  const config =
    addr !== undefined && env.NEXUS_OPERATOR_TOKEN && !existsSync(configPath)
      ? undefined
      : await configFrom(configPath, env);
  const token =
    config === undefined
      ? (env.NEXUS_OPERATOR_TOKEN as string).trim()
      : await readOperatorToken(config, env);
  const baseUrl = addr ?? adminBaseUrl(config as Config);
  async function raw(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new CliError(
        `cannot reach the admin API at ${baseUrl}: is \`nexus up\` running?`,
        'admin_unreachable',
      );
    }
  }
  return {
    config,
    baseUrl,
    raw: (method, path) => raw(method, path),
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await raw(method, path, body);
      if (res.status === 204) return undefined as T;
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        throw new CliError(`admin API answered ${res.status} with a non-JSON body`);
      }
      if (!res.ok) {
        const p = parsed as { code?: string; title?: string; detail?: string } | undefined;
        const code = p?.code ?? 'error';
        throw new CliError(`${p?.detail ?? p?.title ?? `HTTP ${res.status}`} (${code})`, code);
      }
      return parsed as T;
    },
  };
}
