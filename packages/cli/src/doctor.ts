/**
 * `nexus doctor`: checks a node's setup before (or while) it runs and says the fix for each
 * problem: the config, the key files' modes, the listen ports, the store and its schema,
 * the clock against a running node, each service's credential and upstream.
 *
 * `fail` is what stops `nexus up` (or a running node) from working at all; `warn` is what
 * makes some requests fail (a service's upstream or credential) or what doctor could not
 * check. MUST: names, paths, addresses and counts only: never a credential, key or token
 * value (not even the store URL's password), and no request is ever sent to an upstream.
 */
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { checkStateFileModes, operatorTokenFile, type Config } from '@nexus-proxy/server/config';
import { adminBaseUrl, configFrom, readOperatorToken } from './admin-client.js';

type Env = Readonly<Record<string, string | undefined>>;

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One check's result, as `--json` prints it. */
export interface DoctorCheck {
  readonly name: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do about it; null when there is nothing to do. */
  readonly fix: string | null;
}

/** How long a TCP connect or an admin API call may take before it counts as unreachable. */
const TIMEOUT_MS = 3000;
/** Clock difference to a running node that deserves a warning (signatures allow some skew). */
const CLOCK_WARN_SECONDS = 5;

const ok = (name: string, detail: string): DoctorCheck => ({
  name,
  status: 'ok',
  detail,
  fix: null,
});
const check = (name: string, status: CheckStatus, detail: string, fix: string): DoctorCheck => ({
  name,
  status,
  detail,
  fix,
});

const hostPort = (host: string, port: number): string =>
  `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** Runs every check; the later ones need a valid config, so a bad config stops there. */
export async function runDoctor(configPath: string, env: Env): Promise<DoctorCheck[]> {
  let config: Config;
  try {
    config = await configFrom(configPath, env);
  } catch (e) {
    const message = (e as Error).message;
    return [
      check(
        'config',
        'fail',
        message,
        existsSync(configPath)
          ? `correct ${configPath} as listed above (nexus.schema.json gives editor completion)`
          : 'run `nexus init`, or pass --config FILE (or set NEXUS_CONFIG)',
      ),
    ];
  }
  const checks: DoctorCheck[] = [ok('config', `${configPath} is valid`)];
  checks.push(...keyFileChecks(config));
  const node = await probeNode(config, env);
  checks.push(node.check);
  checks.push(
    await portCheck('proxy_port', 'proxy.listen', config.proxy.listen, configPath, node, 'proxy'),
    await portCheck('admin_port', 'admin.listen', config.admin.listen, configPath, node, 'admin'),
  );
  const store = await storeCheck(config);
  checks.push(store.check);
  if (node.dateHeader !== undefined) checks.push(clockCheck(node.dateHeader, node.localTime));
  checks.push(...credentialChecks(config, store.credentials, node.status));
  checks.push(...(await upstreamChecks(config, configPath)));
  return checks;
}

function keyFileChecks(config: Config): DoctorCheck[] {
  const out: DoctorCheck[] = [];
  try {
    checkStateFileModes(config);
    out.push(ok('state_files', 'key files and the store are readable by this user only'));
  } catch (e) {
    const err = e as Error & { fix?: string };
    out.push(
      check(
        'state_files',
        'fail',
        err.message.replace(/^refusing to start: /, '').replace(/; run: .*$/, ''),
        err.fix ?? 'chmod 600 the key files and the store, chmod 700 their directories',
      ),
    );
  }
  if (config.master_key.source === 'env') {
    out.push(ok('master_key', 'the vault master key comes from NEXUS_MASTER_KEY'));
  } else if (existsSync(config.master_key.path)) {
    out.push(ok('master_key', `the vault master key file ${config.master_key.path} exists`));
  } else {
    out.push(
      check(
        'master_key',
        'fail',
        `no vault master key: ${config.master_key.path} does not exist and NEXUS_MASTER_KEY is not set`,
        'run `nexus init` on this directory, restore the key file from a backup, or set NEXUS_MASTER_KEY',
      ),
    );
  }
  return out;
}

/** The node status fields doctor uses. */
interface StatusView {
  node?: { proxy_url?: string | null; admin_url?: string | null; uptime_seconds?: number };
  services?: { name: string; credential: string | null; credential_status: string }[];
}

interface NodeProbe {
  readonly check: DoctorCheck;
  /** A Nexus admin API answered on admin.listen. */
  readonly running: boolean;
  readonly status: StatusView | undefined;
  readonly dateHeader: string | undefined;
  readonly localTime: number;
}

async function fetchWithTimeout(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
}

/** Is a node running on this config's admin listener, and what does `/v1/status` say? */
async function probeNode(config: Config, env: Env): Promise<NodeProbe> {
  const base = adminBaseUrl(config);
  const localTime = Date.now();
  let health: Response;
  try {
    health = await fetchWithTimeout(`${base}/v1/health`);
    await health.arrayBuffer();
  } catch {
    return {
      check: ok('node', `no node is running (nothing answers at ${base})`),
      running: false,
      status: undefined,
      dateHeader: undefined,
      localTime,
    };
  }
  const dateHeader = health.headers.get('date') ?? undefined;
  if (!health.ok) {
    return {
      check: check(
        'node',
        'warn',
        `something answers at ${base} but it is not a Nexus admin API (HTTP ${health.status})`,
        'stop that process or change admin.listen',
      ),
      running: false,
      status: undefined,
      dateHeader: undefined,
      localTime,
    };
  }
  let token: string;
  try {
    token = await readOperatorToken(config, env);
  } catch {
    return {
      check: check(
        'node',
        'warn',
        `a node is running at ${base}; its status was not checked: no operator token`,
        `set NEXUS_OPERATOR_TOKEN or restore ${operatorTokenFile(config)}`,
      ),
      running: true,
      status: undefined,
      dateHeader,
      localTime,
    };
  }
  try {
    const res = await fetchWithTimeout(`${base}/v1/status`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await res.json().catch(() => undefined)) as
      (StatusView & { code?: string }) | undefined;
    if (!res.ok) {
      return {
        check: check(
          'node',
          'warn',
          `a node is running at ${base}; GET /v1/status answered ${res.status} (${body?.code ?? 'error'})`,
          res.status === 401 || res.status === 403
            ? `the operator token is not valid for this node: set NEXUS_OPERATOR_TOKEN to one it accepts, or restore ${operatorTokenFile(config)}`
            : 'see the node log',
        ),
        running: true,
        status: undefined,
        dateHeader,
        localTime,
      };
    }
    const up = body?.node?.uptime_seconds;
    return {
      check: ok(
        'node',
        `a node is running at ${base} (proxy ${body?.node?.proxy_url ?? '-'}${up === undefined ? '' : `, up ${up} s`}); /v1/status answers`,
      ),
      running: true,
      status: body,
      dateHeader: res.headers.get('date') ?? dateHeader,
      localTime,
    };
  } catch {
    return {
      check: check(
        'node',
        'warn',
        `a node is running at ${base} but GET /v1/status did not answer within ${TIMEOUT_MS / 1000} s`,
        'see the node log',
      ),
      running: true,
      status: undefined,
      dateHeader,
      localTime,
    };
  }
}

/** Binds host:port briefly; resolves with the error code, or undefined when it was free. */
function tryBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

async function portCheck(
  name: string,
  setting: string,
  listen: { host: string; port: number },
  configPath: string,
  node: NodeProbe,
  which: 'proxy' | 'admin',
): Promise<DoctorCheck> {
  const addr = hostPort(listen.host, listen.port);
  const code = await tryBind(listen.host, listen.port);
  if (code === undefined) return ok(name, `${addr} (${setting}) is free`);
  if (code === 'EADDRINUSE') {
    const url = which === 'proxy' ? node.status?.node?.proxy_url : node.status?.node?.admin_url;
    const served =
      which === 'admin'
        ? node.running
        : url !== undefined && url !== null && new URL(url).port === String(listen.port);
    if (served) return ok(name, `${addr} (${setting}) is served by this node`);
    if (which === 'proxy' && node.running && node.status === undefined) {
      return check(
        name,
        'warn',
        `${addr} (${setting}) is in use; a node runs on admin.listen but its status could not be read to confirm it serves this port`,
        'give doctor the operator token (NEXUS_OPERATOR_TOKEN) to confirm',
      );
    }
    return check(
      name,
      'fail',
      `${addr} (${setting}) is in use by another process: \`nexus up\` would fail with address_in_use`,
      `stop the process listening on ${addr}, or change ${setting} in ${configPath}`,
    );
  }
  return check(
    name,
    'fail',
    `cannot listen on ${addr} (${setting}): ${code}`,
    code === 'EACCES'
      ? `use a port above 1023 in ${setting}, or give the node the right to bind low ports`
      : `set ${setting} in ${configPath} to an address of this host`,
  );
}

/** Describes the store without its URL's user and password. */
function storeName(config: Config): string {
  if (config.store.driver === 'sqlite') return `SQLite store ${config.store.path}`;
  try {
    const u = new URL(config.store.url);
    return `PostgreSQL store at ${u.host}${u.pathname}`;
  } catch {
    return 'PostgreSQL store';
  }
}

/** Removes the store URL and its password from a driver's message, should one hold them. */
function scrubStoreMessage(config: Config, message: string): string {
  if (config.store.driver !== 'postgres') return message;
  let out = message.split(config.store.url).join('<store url>');
  try {
    const password = decodeURIComponent(new URL(config.store.url).password);
    if (password !== '') out = out.split(password).join('<redacted>');
  } catch {
    // not a URL: nothing more to remove
  }
  return out;
}

async function storeCheck(
  config: Config,
): Promise<{ check: DoctorCheck; credentials: Set<string> | undefined }> {
  const what = storeName(config);
  if (config.store.driver === 'sqlite' && config.store.path === ':memory:') {
    return {
      check: check(
        'store',
        'warn',
        'the store is in memory: nothing survives a restart',
        'give store: a file (sqlite:.nexus/nexus.db) or postgres:// URL',
      ),
      credentials: undefined,
    };
  }
  // The whole server (store drivers included) is loaded only for this check.
  const { openConfiguredStore } = await import('@nexus-proxy/server');
  let store: Awaited<ReturnType<typeof openConfiguredStore>>;
  try {
    store = await openConfiguredStore(config, { readonly: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    const message = scrubStoreMessage(config, err.message);
    const fix =
      err.code === 'store_missing'
        ? 'run `nexus init` on this directory, or restore the store from a backup'
        : err.code === 'store_version_unsupported'
          ? /newer/.test(message)
            ? 'upgrade Nexus to the version that wrote this store'
            : 'start the node once (`nexus up`) to migrate the store'
          : config.store.driver === 'postgres'
            ? 'check store: in the config and that the PostgreSQL server is up and lets this user connect'
            : 'check the store file (its path, owner and mode)';
    return {
      check: check('store', 'fail', `${what} does not open: ${message}`, fix),
      credentials: undefined,
    };
  }
  try {
    const names = new Set((await store.listCredentials()).map((c) => c.name));
    return {
      check: ok(
        'store',
        `${what} opens read-only; its schema version ${store.schemaVersion} is current`,
      ),
      credentials: names,
    };
  } catch (e) {
    return {
      check: check(
        'store',
        'fail',
        `${what} opens but cannot be read: ${scrubStoreMessage(config, (e as Error).message)}`,
        'see the store file or database',
      ),
      credentials: undefined,
    };
  } finally {
    await store.close().catch(() => undefined);
  }
}

function clockCheck(dateHeader: string, localTime: number): DoctorCheck {
  const nodeTime = Date.parse(dateHeader);
  if (Number.isNaN(nodeTime)) {
    return check(
      'clock',
      'warn',
      'the running node sent no usable Date header',
      'see the node log',
    );
  }
  // The Date header has whole seconds: a difference under 1 s is rounding.
  const skew = Math.round((localTime - nodeTime) / 1000);
  if (Math.abs(skew) <= CLOCK_WARN_SECONDS) {
    return ok('clock', `this host's clock and the running node's agree (${skew} s)`);
  }
  return check(
    'clock',
    'warn',
    `this host's clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the running node's: signed requests and leases may be refused as expired or not yet valid`,
    'synchronise both clocks with NTP (e.g. systemd-timesyncd or chrony)',
  );
}

function credentialChecks(
  config: Config,
  stored: Set<string> | undefined,
  status: StatusView | undefined,
): DoctorCheck[] {
  const out: DoctorCheck[] = [];
  for (const svc of Object.values(config.services)) {
    const credential = svc.auth.credential;
    if (credential === undefined) continue;
    const name = `credential.${svc.name}`;
    // The running node's view first (its vault), else the store's list of names.
    const live = status?.services?.find((s) => s.name === svc.name)?.credential_status;
    const set = live !== undefined ? live === 'set' : stored?.has(credential);
    if (set === undefined) {
      out.push(
        check(
          name,
          'warn',
          `credential "${credential}" of ${svc.name} was not checked: the store did not open`,
          'fix the store check above',
        ),
      );
    } else if (set) {
      out.push(ok(name, `credential "${credential}" of ${svc.name} is set`));
    } else {
      out.push(
        check(
          name,
          'warn',
          `credential "${credential}" of ${svc.name} is not set: every request to ${svc.name} fails with credential_unavailable`,
          `printf %s "$VALUE" | nexus credential set ${credential}`,
        ),
      );
    }
  }
  return out;
}

/** TCP connect only: no byte is sent, so no request and no credential reaches the upstream. */
function tcpConnect(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: TIMEOUT_MS });
    const done = (result: string | undefined) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done(undefined));
    socket.once('timeout', () => done(`no answer within ${TIMEOUT_MS / 1000} s`));
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
  });
}

async function upstreamChecks(config: Config, configPath: string): Promise<DoctorCheck[]> {
  return Promise.all(
    Object.values(config.services).map(async (svc) => {
      const name = `upstream.${svc.name}`;
      const url = new URL(svc.upstream);
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const addr = hostPort(host, port);
      const error = await tcpConnect(host, port);
      if (error === undefined)
        return ok(name, `${svc.name}'s upstream ${addr} accepts connections`);
      return check(
        name,
        'warn',
        `${svc.name}'s upstream ${addr} is not reachable from this host (${error}): requests to ${svc.name} fail with upstream_unreachable`,
        `check services.${svc.name}.upstream in ${configPath}, DNS, and that a firewall lets this host reach ${addr}`,
      );
    }),
  );
}

/** The human report: one line per check (a long detail's further lines indented under it), each fix, and a summary. */
export function formatDoctor(checks: readonly DoctorCheck[]): string {
  const nameWidth = Math.max(5, ...checks.map((c) => c.name.length));
  const indent = ' '.repeat(6 + nameWidth + 2);
  let text = `${'STATUS'}  ${'CHECK'.padEnd(nameWidth)}  DETAIL\n`;
  for (const c of checks) {
    const [first, ...rest] = c.detail.split('\n');
    text += `${c.status.toUpperCase().padEnd(6)}  ${c.name.padEnd(nameWidth)}  ${first ?? ''}\n`;
    for (const line of rest) text += `${indent}${line}\n`;
  }
  const fixes = checks.filter((c) => c.fix !== null);
  if (fixes.length > 0) {
    text += '\nTo fix:\n';
    for (const c of fixes) text += `  ${c.name}: ${c.fix}\n`;
  }
  const fails = checks.filter((c) => c.status === 'fail').length;
  const warns = checks.filter((c) => c.status === 'warn').length;
  text += `\n${fails} failed, ${warns} warning${warns === 1 ? '' : 's'}, ${checks.length - fails - warns} ok\n`;
  return text;
}
