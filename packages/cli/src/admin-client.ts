/**
 * How CLI commands reach a running node: the admin listener from `nexus.yaml` and an
 * operator token from `NEXUS_OPERATOR_TOKEN` or `.nexus/operator.token` beside the config.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { loadConfig, operatorTokenFile, type Config } from '@nexus/server';

export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 'cli_error',
  ) {
    super(message);
  }
}

export interface AdminClient {
  readonly config: Config;
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

export async function adminClient(
  configPath: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<AdminClient> {
  const config = await configFrom(configPath, env);
  const token = await readOperatorToken(config, env);
  const baseUrl = env.NEXUS_ADMIN_URL ?? adminBaseUrl(config);
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
