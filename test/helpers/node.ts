/**
 * Spawns a real Nexus node for end-to-end tests: `nexus init` in a temp directory, a test
 * config written over the example, `nexus up` as a child process, and helpers to call the
 * CLI, the admin API and to enroll agents with the real SDK.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { enroll, type NexusAgent, type AgentKeyAlgorithm } from '@nexus-proxy/sdk';

export const REPO = resolve(import.meta.dirname, '../..');
export const NEXUS_BIN = join(REPO, 'packages/cli/bin/nexus.js');

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `nexus` binary. */
export function runCli(
  args: string[],
  options: {
    cwd?: string;
    env?: Record<string, string | undefined>;
    stdin?: string;
    timeoutMs?: number;
  } = {},
): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...options.env })) {
      if (v !== undefined) env[k] = v;
    }
    const child = spawn(process.execPath, [NEXUS_BIN, ...args], {
      cwd: options.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(options.stdin ?? '');
  });
}

export interface NodeOptions {
  /** Replaces `services` of the example config. */
  services?: Record<string, unknown>;
  agents?: Record<string, unknown>;
  policies?: unknown[];
  /** Shallow overrides of top-level config sections (authority, proxy, scrub...). */
  overrides?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  /** The `store` URL (e.g. a test PostgreSQL database); `nexus init --store` creates it. */
  store?: string;
  /**
   * Joins the cluster of this node: same store, master key and operator token, no
   * `nexus init` (issue 13). Its `store` is used unless `store` is given.
   */
  join?: TestNode;
  /** More arguments of `nexus up` (e.g. `--workers 2`). */
  upArgs?: string[];
}

export interface TestNode {
  readonly dir: string;
  readonly configPath: string;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly operatorToken: string;
  /** The `store` URL, when one was given. */
  readonly store: string | undefined;
  readonly process: ChildProcess;
  /** Everything `nexus up` printed so far (stdout and stderr). */
  output(): string;
  cli(
    args: string[],
    options?: { stdin?: string; env?: Record<string, string | undefined> },
  ): Promise<CliResult>;
  admin<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
  enrollmentToken(
    agent: string,
    extra?: { ttl_seconds?: number; act?: string; task?: string },
  ): Promise<string>;
  enroll(
    agent: string,
    options?: { keyAlgorithm?: AgentKeyAlgorithm; act?: string; autoRenew?: boolean },
  ): Promise<NexusAgent>;
  setCredential(name: string, fields: Record<string, string>): Promise<void>;
  /**
   * `nexus run` as an agent host runs it (issue 10): a fresh token from
   * `nexus agent enroll AGENT` in NEXUS_ENROLLMENT_TOKEN, the Authority URL, no operator
   * token, in `cwd` (default: a fresh empty directory, the agent's own).
   */
  runAgent(
    agent: string,
    command: string[],
    options?: { args?: string[]; cwd?: string; env?: Record<string, string | undefined> },
  ): Promise<CliResult & { token: string }>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number>;
  /** Starts `nexus up` again on the same directory and ports. */
  restart(): Promise<void>;
}

function withConfig(args: string[], configPath: string): string[] {
  const end = args.indexOf('--');
  return end < 0
    ? [...args, '--config', configPath]
    : [...args.slice(0, end), '--config', configPath, ...args.slice(end)];
}

async function waitForListening(child: ChildProcess, log: () => string): Promise<void> {
  await new Promise<void>((resolveWait, reject) => {
    const timer = setTimeout(() => reject(new Error(`nexus up did not start:\n${log()}`)), 60_000);
    const check = () => {
      if (log().includes('Nexus admin API listening')) {
        clearTimeout(timer);
        resolveWait();
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nexus up exited with ${code}:\n${log()}`));
    });
    check();
  });
}

export async function startNode(options: NodeOptions = {}): Promise<TestNode> {
  const dir = await mkdtemp(join(tmpdir(), 'nexus-e2e-'));
  const store = options.store ?? options.join?.store;
  let operatorToken: string;
  if (options.join === undefined) {
    const init = await runCli([
      'init',
      '--dir',
      dir,
      ...(store === undefined ? [] : ['--store', store]),
    ]);
    if (init.code !== 0) throw new Error(`nexus init failed: ${init.stderr}`);
    operatorToken = (await readFile(join(dir, '.nexus', 'operator.token'), 'utf8')).trim();
  } else {
    // Every node of a cluster unseals the same vault: it needs the same master key.
    await mkdir(join(dir, '.nexus'), { mode: 0o700 });
    await copyFile(
      join(options.join.dir, '.nexus', 'master.key'),
      join(dir, '.nexus', 'master.key'),
    );
    operatorToken = options.join.operatorToken;
  }
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const config: Record<string, unknown> = {
    version: 1,
    proxy: { listen: `127.0.0.1:${proxyPort}` },
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: 'debug' },
    services: options.services ?? {},
    agents: options.agents ?? {},
    policies: options.policies ?? [],
    ...(store === undefined ? {} : { store }),
  };
  for (const [k, v] of Object.entries(options.overrides ?? {})) {
    config[k] =
      typeof v === 'object' && v !== null && !Array.isArray(v)
        ? { ...(config[k] as object), ...v }
        : v;
  }
  const configPath = join(dir, 'nexus.yaml');
  await writeFile(configPath, stringify(config));
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  // `overrides.admin.listen` may name the port (a test that must know it before the start).
  const adminUrl = `http://${(config.admin as { listen: string }).listen}`;

  let log = '';
  let child!: ChildProcess;
  const launch = async () => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...options.env }))
      if (v !== undefined) env[k] = v;
    child = spawn(
      process.execPath,
      [NEXUS_BIN, 'up', '--config', configPath, ...(options.upArgs ?? [])],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout?.on('data', (c: Buffer) => (log += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
    // Only this launch's output counts (a restart appends to the same log).
    const from = log.length;
    await waitForListening(child, () => log.slice(from));
  };
  await launch();

  const node: TestNode = {
    dir,
    configPath,
    proxyUrl,
    adminUrl,
    operatorToken,
    store,
    get process() {
      return child;
    },
    output: () => log,
    cli: (args, o = {}) =>
      // `--config FILE` before a `--` (after it, it would be operands).
      runCli(withConfig(args, configPath), {
        env: { ...options.env, ...o.env },
        stdin: o.stdin,
        cwd: dir,
      }),
    async admin<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(adminUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${operatorToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
    },
    async enrollmentToken(agent, extra = {}) {
      const r = await node.admin<{ enrollment_token: string }>(
        'POST',
        `/v1/agents/${agent}/enrollment-tokens`,
        extra,
      );
      if (r.status !== 201) throw new Error(`enrollment token: ${JSON.stringify(r.body)}`);
      return r.body.enrollment_token;
    },
    async enroll(agent, o = {}) {
      const enrollmentToken = await node.enrollmentToken(agent, o.act ? { act: o.act } : {});
      return enroll({
        authority: proxyUrl,
        enrollmentToken,
        keyAlgorithm: o.keyAlgorithm,
        autoRenew: o.autoRenew ?? false,
      });
    },
    async setCredential(name, fields) {
      const r = await node.admin('PUT', `/v1/credentials/${name}`, { fields });
      if (r.status !== 200) throw new Error(`credential set: ${JSON.stringify(r.body)}`);
    },
    async runAgent(agent, command, o = {}) {
      const enrolled = await node.cli(['agent', 'enroll', agent]);
      const token = enrolled.stdout.trim();
      if (enrolled.code !== 0 || !/^nxe_[A-Za-z0-9_-]+$/.test(token)) {
        throw new Error(`nexus agent enroll ${agent}: ${enrolled.stderr}`);
      }
      const cwd = o.cwd ?? (await mkdtemp(join(tmpdir(), 'nexus-agent-')));
      const r = await runCli(
        ['run', '--authority', proxyUrl, ...(o.args ?? []), '--', ...command],
        { cwd, env: { NEXUS_ENROLLMENT_TOKEN: token, ...o.env } },
      );
      return { ...r, token };
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? 1;
      const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
      child.kill('SIGTERM');
      return exited;
    },
    async restart() {
      await node.stop();
      await launch();
    },
  };
  return node;
}
