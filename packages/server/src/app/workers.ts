/**
 * `nexus up --workers N` (issue 13 "every core of one machine", issue 14 step 4): one
 * primary process and N `node:cluster` workers, each a full node (Authority, proxy, admin
 * API, audit thread) sharing the proxy and admin listeners (the primary accepts and hands
 * connections out round-robin).
 *
 * What the workers share, and how (docs/deploy.md, "--workers"):
 * - The SQLite store file. The primary holds the node lock for all of them, so no other
 *   node can open the store; each worker's audit thread reads and extends the one chain
 *   head inside its `BEGIN IMMEDIATE` transaction (`SqliteStore.appendAuditLinked`).
 * - Replay records: the (lease, nonce) pair of each forwarded request goes into the
 *   store's `replay_nonces` (unique key) in the same audit-thread transaction as its
 *   request record (`SqliteStore.appendAuditLinked` claims); a pair another worker
 *   recorded refuses the record and the request (`replay_detected`). Each worker's
 *   in-memory cache is the pre-filter. No write or hop of its own, and the record
 *   survives a crash exactly when the request record does.
 * - Revocations, agent and key changes and config reloads: relayed to every other worker
 *   by the primary (`worker-sync.ts`).
 * - `/metrics`: the worker scraped asks the primary, which aggregates every worker's
 *   registry (prom-client's AggregatorRegistry; `worker-metrics.ts`).
 * - `GET /v1/status`: the worker asked asks the primary, which gathers every worker's own
 *   status; the answer is the node's, with each worker listed (`worker-status.ts`).
 * - Web console sessions, person tokens (OIDC logins) and OIDC logins in progress: one
 *   table each, in the primary's memory; workers ask it over IPC (`worker-sessions.ts`).
 * - Requests held by `approve` rules: each waits in the worker that received it; listing
 *   and deciding them reach every worker through the primary (`worker-approvals.ts`).
 * - OAuth connections (`oauth2_authorization_code`): the refresh of a connection runs
 *   under a lock the primary holds for the workers (`worker-oauth-locks.ts`), so a
 *   rotating refresh token is spent once; pending authorize links are in the store file,
 *   so a callback completes on any worker, once (`oauth-coordination.ts`).
 * - Singletons run in worker 1 only: scheduled signing-key rotation and periodic audit
 *   checkpoints.
 *
 * State a worker keeps in its own memory is refused at start rather than silently split
 * (see {@link refuseWorkersConfig}). On PostgreSQL every worker is simply a cluster node.
 */
import type { Serializable } from 'node:child_process';
import cluster, { type Worker } from 'node:cluster';
import { realpathSync } from 'node:fs';
import { NexusError } from '@nexus-proxy/protocol';
import type { Config } from '../config/schema.js';
import { acquireNodeLock } from '../store/node-lock.js';
import { openSqliteStore } from '../store/sqlite.js';
import Database from 'better-sqlite3';
import { replayKey } from '../proxy/replay-shared.js';
import { isWorkerSyncMessage } from './worker-sync.js';
import { IpcPeer } from './ipc-peer.js';
import { answerMetricsScrape } from './worker-metrics.js';
import { answerSessions, primaryConsoleState } from './worker-sessions.js';
import { answerApprovals } from './worker-approvals.js';
import { answerStatus } from './worker-status.js';
import { answerOAuthLocks, OAuthLockTable } from './worker-oauth-locks.js';

/** Environment of a worker: its number (1..N), N, and the replay barrier (ms, 0: none). */
export const WORKER_ENV = 'NEXUS_WORKER';
export const WORKERS_ENV = 'NEXUS_WORKERS';
export const WORKER_NOT_BEFORE_ENV = 'NEXUS_WORKER_NOT_BEFORE';

/** What a worker is told by the primary (from its environment). */
export interface WorkerRole {
  /** 1..count; worker 1 runs the singletons. */
  readonly id: number;
  readonly count: number;
  /** Signatures created before this time (ms) are refused (the replay barrier). */
  readonly notBefore: number;
}

/** The worker role of this process, when the primary of `nexus up --workers` forked it. */
export function workerRole(env: NodeJS.ProcessEnv = process.env): WorkerRole | undefined {
  if (!cluster.isWorker) return undefined;
  const id = Number(env[WORKER_ENV]);
  const count = Number(env[WORKERS_ENV]);
  const notBefore = Number(env[WORKER_NOT_BEFORE_ENV] ?? '0');
  if (!Number.isInteger(id) || !Number.isInteger(count) || id < 1) return undefined;
  return { id, count, notBefore: Number.isFinite(notBefore) ? notBefore : 0 };
}

/**
 * Refuses a configuration whose per-process state would silently multiply or split across
 * workers (fail closed, at start).
 *
 * @throws WorkersConfigError
 */
export function refuseWorkersConfig(config: Config, count: number): void {
  if (count <= 1 || config.store.driver === 'postgres') return;
  const why: string[] = [];
  if (config.store.path === ':memory:') why.push('store.path is :memory: (nothing to share)');
  if (config.limits.length > 0 && config.redis === undefined) {
    why.push(
      'limits: rate limits and budgets count in each process without redis: (N times the limit); configure redis: or run one worker',
    );
  }
  if (why.length > 0) {
    throw new WorkersConfigError(
      `--workers ${count} cannot run this configuration: ${why.join('; ')}`,
    );
  }
}

/** A configuration `--workers N` refuses (the CLI exits with it at start). */
export class WorkersConfigError extends Error {
  readonly code = 'workers_refused';
}

/** Meta key of the replay state (`replay-state.ts`); `workers`: replay_nonces holds it. */
const STATE = 'proxy.state';
const SNAPSHOT = 'proxy.replay_snapshot';

/**
 * Before forking, on the SQLite store: carries the replay records of a previous single
 * process over, and marks the store as served by workers.
 * - `stopped` (a clean stop): its cache snapshot is inserted into `replay_nonces`, so a
 *   request it accepted stays refused; no barrier.
 * - `running` (it crashed): its records are lost, so every signature that could predate
 *   this start is refused (the barrier, as a single node's restart after a crash does).
 * - `workers` (a previous `--workers` run): the records are in `replay_nonces` already.
 *
 * @returns the barrier time (ms), 0 for none
 */
async function replayHandOver(path: string, startedAt: number): Promise<number> {
  const store = openSqliteStore(path, { create: false });
  try {
    const state = await store.getMeta(STATE);
    let barrier = 0;
    if (state === 'running') barrier = startedAt;
    const snapshot = state === 'stopped' ? await store.getMeta(SNAPSHOT) : undefined;
    if (snapshot !== undefined) {
      const db = new Database(path, { fileMustExist: true });
      try {
        db.pragma('busy_timeout = 5000');
        const insert = db.prepare(
          'INSERT INTO replay_nonces (key, forget_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING',
        );
        const entries = JSON.parse(snapshot) as [string, number][];
        db.transaction(() => {
          for (const [key, forgetAtSecond] of entries) {
            // The in-memory cache's key is `<lease id> NUL <nonce>` (proxy/replay-cache.ts).
            const cut = key.indexOf('\u0000');
            if (cut < 0) continue;
            insert.run(replayKey(key.slice(0, cut), key.slice(cut + 1)), forgetAtSecond * 1000);
          }
        })();
      } finally {
        db.close();
      }
    } else if (state === 'stopped') {
      barrier = startedAt;
    }
    // A single node started later on this store applies its barrier (replay-state.ts).
    await store.setMeta(STATE, 'workers');
    await store.setMeta(SNAPSHOT, '[]');
    return barrier;
  } finally {
    await store.close();
  }
}

/** Options of {@link runWorkersPrimary}. */
export interface WorkersPrimaryOptions {
  readonly config: Config;
  readonly count: number;
  /** Lines for the operator (stdout). */
  readonly out: (line: string) => void;
  readonly clock?: () => number;
}

/**
 * Runs the primary: takes the node lock, forks `count` workers, relays their changes,
 * restarts a worker that dies, and on SIGTERM/SIGINT stops them all (each drains its
 * in-flight requests) before it returns. Resolves when every worker stopped.
 */
export async function runWorkersPrimary(options: WorkersPrimaryOptions): Promise<void> {
  const { config, count, out } = options;
  const clock = options.clock ?? Date.now;
  refuseWorkersConfig(config, count);
  let release = () => undefined as void;
  let notBefore = 0;
  if (config.store.driver === 'sqlite') {
    const path = realpathSync(config.store.path);
    const lock = acquireNodeLock(path);
    release = () => lock.release();
    try {
      notBefore = await replayHandOver(path, clock());
    } catch (err) {
      release();
      throw err;
    }
  }
  const workers = new Map<number, Worker>();
  /** Each worker's peer on its pipe, by worker number; `ready`: it listens. */
  const peers = new Map<number, { worker: Worker; peer: IpcPeer; ready: boolean }>();
  /** How many times each slot was started. */
  const forks = new Map<number, number>();
  const startedAt = clock();
  const slots = () =>
    Array.from({ length: count }, (_x, i) => {
      const id = i + 1;
      const w = workers.get(id);
      const live = w !== undefined && w.isConnected();
      return {
        id,
        peer: live ? peers.get(id)?.peer : undefined,
        pid: w?.process.pid,
        restarts: Math.max(0, (forks.get(id) ?? 0) - 1),
      };
    });
  /** The OAuth refresh locks of every worker (each worker's pipe owns its own). */
  const oauthLocks = new OAuthLockTable();
  let stopping = false;
  let ready = 0;
  let announced = false;
  /** Recent start times, to stop on a crash loop instead of forking forever. */
  const starts: number[] = [];
  /** The console's sessions, person tokens and OIDC flows, for every worker. */
  const consoleState = primaryConsoleState(clock);
  const fork = (id: number) => {
    starts.push(clock());
    const worker = cluster.fork({
      [WORKER_ENV]: String(id),
      [WORKERS_ENV]: String(count),
      [WORKER_NOT_BEFORE_ENV]: String(notBefore),
    });
    workers.set(id, worker);
    forks.set(id, (forks.get(id) ?? 0) + 1);
    const peer = new IpcPeer((message) => {
      if (worker.isConnected()) worker.send(message as Serializable);
    });
    answerSessions(peer, consoleState);
    answerStatus(peer, slots, startedAt);
    answerMetricsScrape(peer);
    const entry = { worker, peer, ready: false };
    peers.set(id, entry);
    // Held requests are in the workers that listen: one still starting holds none (and
    // answers approval asks from when it listens: its board is made before its listeners),
    // and one whose pipe is gone holds none any more (its requests went with it).
    worker.once('listening', () => {
      entry.ready = true;
    });
    answerApprovals(peer, () =>
      [...peers]
        .filter(([other, p]) => other !== id && p.ready && p.worker.isConnected())
        .map(([, p]) => p.peer),
    );
    answerOAuthLocks(peer, oauthLocks);
    worker.on('message', (message: unknown) => {
      if (peer.receive(message)) return;
      if (isWorkerSyncMessage(message)) {
        for (const [other, w] of workers) {
          if (other !== id && w.isConnected()) w.send(message);
        }
        return;
      }
      const hello = (message as { nexusReady?: { proxy: string; admin: string } }).nexusReady;
      if (hello !== undefined && announced) {
        out(`worker ${id} listening again\n`);
      } else if (hello !== undefined) {
        ready++;
        if (ready === count) {
          announced = true;
          out(`Nexus proxy and Authority listening on ${hello.proxy} (${count} workers)\n`);
          out(`Nexus admin API listening on ${hello.admin}\n`);
        }
      }
    });
    worker.on('exit', (code, signal) => {
      peer.close();
      // MUST: a dead worker's locks go with it (a kill -9 mid-refresh blocks no one).
      oauthLocks.releaseOwner(peer);
      if (workers.get(id) === worker) workers.delete(id);
      if (peers.get(id)?.worker === worker) peers.delete(id);
      if (stopping) return;
      out(`worker ${id} exited (${signal ?? `code ${code}`}); starting it again\n`);
      const recent = starts.filter((t) => clock() - t < 10_000);
      if (recent.length > count * 5) {
        out('workers keep exiting right after they start: stopping\n');
        void stopAll(1);
        return;
      }
      setTimeout(() => {
        if (!stopping) fork(id);
      }, 100);
    });
  };

  let exitCode = 0;
  let finish = () => undefined as void;
  const done = new Promise<void>((r) => (finish = r));
  const stopAll = (code: number) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    for (const w of workers.values()) w.process.kill('SIGTERM');
    const check = setInterval(() => {
      if ([...workers.values()].every((w) => w.isDead())) {
        clearInterval(check);
        finish();
      }
    }, 50);
  };
  const onSignal = (signal: string) => {
    out(`Received ${signal}: stopping ${workers.size} workers...\n`);
    stopAll(0);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  // SIGHUP: every worker re-reads nexus.yaml.
  const onHup = () => {
    for (const w of workers.values()) w.process.kill('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  for (let id = 1; id <= count; id++) fork(id);
  await done;
  process.off('SIGHUP', onHup);
  release();
  out('Nexus stopped.\n');
  if (exitCode !== 0) throw new NexusError('internal_error', 'workers kept exiting at start');
}
