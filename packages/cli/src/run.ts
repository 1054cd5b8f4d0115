/**
 * `nexus run`: run a command as an agent, with agent rights only. It enrolls with a
 * one-time enrollment token (NEXUS_ENROLLMENT_TOKEN or an enrollment file from
 * `nexus agent enroll NAME -o FILE`) and the Authority URL, holds the lease key in a
 * loopback signing sidecar, starts the command with NEXUS_PROXY and nothing else of ours,
 * and revokes its own lease at exit (signed, proof of possession).
 *
 * MUST NOT: read the operator token or the master key, or call the admin API. The token is
 * spent before the child starts, so a child that reads this process's environment
 * (/proc/$PPID/environ) finds nothing it can use. MUST: warn when the child could read
 * the node's key files or operator secrets anyway; `--sandbox` hides them for real.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { resolve, sep } from 'node:path';
import { loadConfig, nodeStateFiles, type Config } from '@nexus-proxy/server/config';
import { generateAgentKey } from '@nexus-proxy/protocol';
import { enroll, fromLease, type AgentService, type NexusAgent } from '@nexus-proxy/sdk';
import { CliError } from './admin-client.js';
import { DELEGATE_PATH, startSidecar } from './sidecar.js';
import {
  baseUrlEnvironment,
  forwardProxyEnvironment,
  selectEnvServices,
  writeCaFiles,
  type CaFiles,
} from './reach.js';
import type { ForwardProxyOptions, OwnedHost } from './forward-proxy.js';
import { bwrapArgs, findBwrap, type SandboxView } from './sandbox.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The Authority of the default nexus.yaml (`nexus init`): the newcomer's node. */
export const DEFAULT_AUTHORITY = 'http://127.0.0.1:7070';

/** Operator secrets an agent's environment must not hold. */
const OPERATOR_SECRETS = ['NEXUS_OPERATOR_TOKEN', 'NEXUS_MASTER_KEY'];

export interface RunOptions {
  readonly authority?: string;
  readonly enrollmentFile?: string;
  readonly agent?: string;
  readonly intent?: string;
  readonly key: 'ed25519' | 'ecdsa-p256';
  readonly sandbox?: boolean;
  readonly hide: readonly string[];
  /** With `sandbox`: further paths the command may read and write. */
  readonly share?: readonly string[];
  /** The node's nexus.yaml when given explicitly; else ./nexus.yaml when present. */
  readonly config?: string;
  /** Base-URL mode: `all` (default), `none`, or comma-separated service names. */
  readonly env?: string;
  /** Forward-proxy mode (HTTP(S)_PROXY, the run CA); default on. */
  readonly forwardProxy?: boolean;
  /** Inside another `nexus run`: the sub-lease's roles (comma-separated), spec §12.5. */
  readonly delegateRoles?: string;
  /** Inside another `nexus run`: the sub-lease's services (comma-separated). */
  readonly delegateServices?: string;
  /** Inside another `nexus run`: the sub-lease's intent pattern (a glob). */
  readonly delegateIntent?: string;
  /** Inside another `nexus run`: the sub-lease's lifetime, seconds. */
  readonly delegateTtl?: string;
}

export interface RunIo {
  /** Warnings and notes (stderr): never a token. */
  readonly warn: (line: string) => void;
}

/** The enrollment file `nexus agent enroll NAME -o FILE` writes (mode 0600). */
export interface EnrollmentFile {
  readonly agent?: string;
  readonly authority?: string;
  readonly enrollment_token: string;
  readonly expires_at?: string;
}

function readEnrollmentFile(path: string): EnrollmentFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new CliError(`cannot read the enrollment file ${path}`, 'enrollment_missing');
  }
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return { enrollment_token: trimmed };
  try {
    const parsed = JSON.parse(trimmed) as Partial<EnrollmentFile>;
    if (typeof parsed.enrollment_token === 'string' && parsed.enrollment_token !== '') {
      return parsed as EnrollmentFile;
    }
  } catch {
    // fall through: one message for every malformed file, without its content
  }
  throw new CliError(
    `${path} is not an enrollment file (make one with \`nexus agent enroll NAME -o FILE\`)`,
    'enrollment_missing',
  );
}

/** The node's config on this host, if any: only to find the Authority and the node's files. */
async function nodeConfig(explicit: string | undefined): Promise<Config | undefined> {
  const path = explicit ?? (existsSync('nexus.yaml') ? 'nexus.yaml' : undefined);
  if (path === undefined) return undefined;
  try {
    // An empty environment: NEXUS_MASTER_KEY, if set here, is not read into memory.
    return await loadConfig(path, { env: {} });
  } catch (err) {
    if (explicit === undefined) return undefined;
    throw new CliError(`cannot read ${explicit}: ${(err as Error).message}`);
  }
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * The node's state this run knows of: `.nexus/` in the working directory, the state of
 * the node's config when this host has one, and `--hide` paths. Existing paths only;
 * anything under a listed directory is covered by it.
 */
function nodeStatePaths(config: Config | undefined, hide: readonly string[]): string[] {
  const candidates = [
    resolve('.nexus'),
    ...(config === undefined ? [] : nodeStateFiles(config).map((f) => f.path)),
    ...hide.map((p) => resolve(p)),
  ].filter((p) => existsSync(p));
  const dirs = candidates.filter((p) => statSync(p).isDirectory());
  const out: string[] = [];
  for (const p of [...new Set(candidates)].sort((a, b) => a.length - b.length)) {
    if (dirs.some((d) => d !== p && isUnder(p, d))) continue;
    out.push(p);
  }
  return out;
}

function readable(path: string): boolean {
  try {
    const dir = statSync(path).isDirectory();
    accessSync(path, dir ? constants.R_OK | constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs `command` as the enrolled agent; resolves with its exit code. */
export async function runAsAgent(
  command: readonly string[],
  opts: RunOptions,
  env: Env,
  io: RunIo,
): Promise<number> {
  // Every check that can fail comes before the token is spent.
  let bwrap: string | undefined;
  if (opts.sandbox === true) {
    bwrap = findBwrap(env.PATH);
    if (bwrap === undefined) {
      throw new CliError(
        '--sandbox needs bubblewrap (bwrap) on PATH: install it (Debian/Ubuntu: apt-get install bubblewrap) (sandbox_unavailable)',
        'sandbox_unavailable',
      );
    }
  } else if (opts.hide.length > 0 || (opts.share ?? []).length > 0) {
    throw new CliError('--hide and --share work only with --sandbox');
  }
  const file =
    opts.enrollmentFile === undefined ? undefined : readEnrollmentFile(opts.enrollmentFile);
  const token = file?.enrollment_token ?? env.NEXUS_ENROLLMENT_TOKEN?.trim();
  // Inside another `nexus run` (its sidecar in NEXUS_PROXY) and without a token of its
  // own: the agent delegates a sub-lease to this one instead of enrolling (spec §12.5).
  const enclosing = token === undefined || token === '' ? env.NEXUS_PROXY?.trim() : undefined;
  if ((token === undefined || token === '') && (enclosing === undefined || enclosing === '')) {
    throw new CliError(
      'no enrollment token: set NEXUS_ENROLLMENT_TOKEN or pass --enrollment-file FILE (the operator makes one with `nexus agent enroll NAME`) (enrollment_missing)',
      'enrollment_missing',
    );
  }
  const narrowing = [
    opts.delegateRoles,
    opts.delegateServices,
    opts.delegateIntent,
    opts.delegateTtl,
  ];
  if ((enclosing === undefined || enclosing === '') && narrowing.some((v) => v !== undefined)) {
    // Fail closed: an enrolled agent is not narrowed by these flags, so they are refused.
    throw new CliError(
      '--delegate-roles, --delegate-services, --delegate-intent and --delegate-ttl apply only inside another nexus run, without an enrollment token',
    );
  }
  const config = await nodeConfig(opts.config);
  const authority =
    opts.authority ??
    env.NEXUS_AUTHORITY ??
    file?.authority ??
    config?.authority.issuer ??
    DEFAULT_AUTHORITY;
  if (!/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(authority)) {
    throw new CliError('--authority must be an http(s) URL, e.g. http://127.0.0.1:7070');
  }

  // What the child could reach that belongs to the operator.
  const state = nodeStatePaths(config, opts.hide);
  if (bwrap === undefined) {
    const exposed = state.filter(readable);
    if (exposed.length > 0) {
      io.warn(
        `nexus: warning: the command can read the node's key files or state (${exposed.join(', ')}): run agents as another OS user than the node, or use --sandbox (node_files_readable)`,
      );
    }
    const secrets = OPERATOR_SECRETS.filter((k) => (env[k] ?? '') !== '');
    if (secrets.length > 0) {
      io.warn(
        `nexus: warning: this environment holds ${secrets.join(' and ')}, which the command can read from /proc/${process.pid}/environ: unset it for agents, or use --sandbox (operator_secret_in_env)`,
      );
    }
  }

  const agent =
    enclosing !== undefined && enclosing !== ''
      ? await delegatedAgent(enclosing, opts)
      : await enroll({
          authority,
          enrollmentToken: token!,
          keyAlgorithm: opts.key,
          onRenewalError: (e) =>
            io.warn(`nexus: warning: lease renewal failed for good: ${e.code} (renewal_failed)`),
        });
  let sidecar: Awaited<ReturnType<typeof startSidecar>> | undefined;
  let caFiles: CaFiles | undefined;
  try {
    if (opts.agent !== undefined && agent.name !== opts.agent) {
      throw new CliError(
        `the enrollment token is for agent ${agent.name}, not ${opts.agent} (agent_mismatch)`,
        'agent_mismatch',
      );
    }
    const spec = (opts.env ?? 'all').trim();
    const forwardOn = opts.forwardProxy !== false;
    const listed = spec === 'none' && !forwardOn ? [] : await listServices(agent, spec, io);
    const reach = selectEnvServices(spec, listed, io.warn);
    let forward: ForwardProxyOptions | undefined;
    if (forwardOn) {
      const hosts = new Map<string, OwnedHost>();
      for (const s of listed) {
        for (const h of s.hosts) hosts.set(h, { service: s.name, pathPrefix: s.path_prefix });
      }
      // The CA exists only while this run does, and only when there is a host to vouch for.
      // The X.509 library is loaded only when the run needs a CA (a service with hosts).
      const ca =
        hosts.size > 0
          ? await (await import('./run-ca.js')).createRunCa([...hosts.keys()])
          : undefined;
      caFiles = ca === undefined ? undefined : await writeCaFiles(ca.certPem, env);
      // A host no service owns: the node decides and audits a blind tunnel (passthrough).
      forward = {
        hosts,
        ...(ca === undefined ? {} : { ca }),
        passthrough: (host, port) => agent.passthrough(host, port),
      };
    }
    sidecar = await startSidecar(agent, {
      intent: opts.intent,
      ...(forward === undefined ? {} : { forward }),
    });
    const view = {
      cwd: process.cwd(),
      share: [
        ...(opts.share ?? []).map((p) => resolve(p)),
        ...(caFiles === undefined ? [] : [caFiles.dir]),
      ],
      hide: state,
      // The node's config stays as it is, should the command share its directory: a
      // changed policy or upstream would apply at the node's next reload.
      readOnly: [
        resolve('nexus.yaml'),
        ...(opts.config === undefined ? [] : [resolve(opts.config)]),
      ],
    };
    const childEnv: Record<string, string> = {
      ...childEnvironment(env, sidecar.url),
      ...(forwardOn ? forwardProxyEnvironment(sidecar.url, caFiles) : {}),
      ...baseUrlEnvironment(reach, sidecar.url),
    };
    // Node before 22.21 ignores the proxy variables in fetch: a preload makes it follow
    // them. Not under --sandbox, where this file may lie outside what the command sees (a
    // missing --import file would stop every node process it starts).
    if (forwardOn && bwrap === undefined) {
      const preload = new URL('./env-proxy-preload.js', import.meta.url).href;
      childEnv.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --import=${preload}`.trim();
    }
    return await spawnChild(command, childEnv, bwrap, view);
  } finally {
    await sidecar?.close();
    if (caFiles !== undefined) await rm(caFiles.dir, { recursive: true, force: true });
    await revokeAtExit(agent, io);
  }
}

/**
 * The services the node lists for this agent (their `env` and `hosts`), signed by this
 * lease. A node too old to serve the list leaves the child with NEXUS_PROXY only (a
 * warning), unless `--env` named services.
 */
async function listServices(agent: NexusAgent, spec: string, io: RunIo): Promise<AgentService[]> {
  try {
    return await agent.services();
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'error';
    if (spec !== 'all' && spec !== 'none') {
      throw new CliError(`--env: cannot read the node's service list (${code})`, code);
    }
    io.warn(
      `nexus: warning: cannot read the node's service list (${code}); only NEXUS_PROXY is set (reach_unavailable)`,
    );
    return [];
  }
}

const list = (v: string | undefined): string[] | undefined =>
  v === undefined
    ? undefined
    : v
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== '');

/** The narrowing `--delegate-*` flags ask for (spec §12.5); the Authority checks it. */
function delegationRequest(opts: RunOptions): Record<string, unknown> {
  const ttl = opts.delegateTtl === undefined ? undefined : Number(opts.delegateTtl);
  if (ttl !== undefined && !(Number.isSafeInteger(ttl) && ttl > 0)) {
    throw new CliError('--delegate-ttl must be a positive number of seconds');
  }
  const roles = list(opts.delegateRoles);
  const services = list(opts.delegateServices);
  return {
    ...(roles !== undefined ? { roles } : {}),
    ...(services !== undefined ? { services } : {}),
    ...(opts.delegateIntent !== undefined ? { intent_pattern: opts.delegateIntent } : {}),
    ...(ttl !== undefined ? { ttl_seconds: ttl } : {}),
  };
}

/**
 * A sub-lease from the enclosing `nexus run`'s sidecar for a key generated here: the key
 * never leaves this process, the lease is never wider than the enclosing agent's.
 */
async function delegatedAgent(sidecarUrl: string, opts: RunOptions): Promise<NexusAgent> {
  // MUST: only a loopback sidecar; the public key is all that is sent.
  if (!/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d+\/?$/.test(sidecarUrl)) {
    throw new CliError(
      'NEXUS_PROXY is not the loopback sidecar of an enclosing nexus run, and there is no enrollment token (enrollment_missing)',
      'enrollment_missing',
    );
  }
  const { privateKey, publicJwk } = await generateAgentKey(opts.key);
  let res: Response;
  try {
    res = await fetch(`${sidecarUrl.replace(/\/$/, '')}${DELEGATE_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jwk: publicJwk, ...delegationRequest(opts) }),
    });
  } catch {
    throw new CliError(
      'cannot reach the enclosing nexus run (delegation_failed)',
      'delegation_failed',
    );
  }
  const body = (await res.json().catch(() => ({}))) as {
    lease?: string;
    proxy_url?: string;
    authority?: string;
    code?: string;
  };
  if (res.status !== 201 || !body.lease || !body.proxy_url || !body.authority) {
    throw new CliError(
      `the enclosing nexus run did not delegate: ${body.code ?? res.status} (delegation_failed)`,
      'delegation_failed',
    );
  }
  return fromLease({
    authority: body.authority,
    key: privateKey,
    lease: body.lease,
    proxyUrl: body.proxy_url,
  });
}

/**
 * MUST: the child sees no key, lease, token or credential: every NEXUS_* variable of ours
 * (the spent enrollment token, any operator secret) is removed; only NEXUS_PROXY is given.
 */
function childEnvironment(env: Env, proxyUrl: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && !k.startsWith('NEXUS_')) out[k] = v;
  }
  out.NEXUS_PROXY = proxyUrl;
  return out;
}

function spawnChild(
  command: readonly string[],
  env: Record<string, string>,
  bwrap: string | undefined,
  view: SandboxView,
): Promise<number> {
  const [cmd, ...args] = bwrap === undefined ? command : [bwrap, ...bwrapArgs(command, view)];
  return new Promise<number>((resolveExit, rejectExit) => {
    const child = spawn(cmd as string, args, { stdio: 'inherit', env });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGTERM', forward);
    process.on('SIGINT', forward);
    child.once('error', (err) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      rejectExit(new CliError(`cannot start ${cmd}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      resolveExit(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 15) : 1));
    });
  });
}

/** The key dies with this process; its lease need not outlive it either. */
async function revokeAtExit(agent: NexusAgent, io: RunIo): Promise<void> {
  try {
    await agent.revoke();
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'error';
    io.warn(
      `nexus: warning: could not revoke the lease (${code}); it expires at ${new Date(agent.claims.exp * 1000).toISOString()} (lease_not_revoked)`,
    );
  }
}

/** Where `nexus agent enroll -o FILE` and `nexus run --enrollment-file` meet. */
export function enrollmentFileJson(file: EnrollmentFile): string {
  return JSON.stringify(file, null, 2) + '\n';
}
