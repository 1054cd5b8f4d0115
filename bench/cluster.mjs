// Bench scenario "cluster": the cost of the state a cluster's nodes share (issue 13).
//
// End to end: 1, 2 and 3 `nexus up` nodes on one PostgreSQL database (a temporary one on
// the server at 127.0.0.1:5432 or NEXUS_TEST_PG_URL) and one private redis-server (replay
// records), and the same single node on SQLite as the reference, in the same run. Every
// node gets its own wrk (64 connections, 1 KiB POST, its own pre-signed Ed25519 requests:
// a nonce is never sent twice) at once, no load balancer; the aggregate req/s is the sum.
// All nodes share one proxy.public_url, so one pre-signed audience serves them all.
// BENCH_CLUSTER_ROUNDS alternating rounds (default 3) of BENCH_CLUSTER_SECONDS (default 4,
// scaled). Nexus CPU per request: the node processes' CPU over the window / requests; the
// private Redis's likewise; PostgreSQL's is not counted (a shared server).
//
// Then the replay check alone, three ways, driven directly as the pipeline drives them: the single
// node's in-memory cache, PostgreSQL (one unique insert per request, a temporary database
// on the server at 127.0.0.1:5432 or NEXUS_TEST_PG_URL) and Redis (one SET NX PX, a
// private redis-server on a free port). For each: the latency of a lone check (one at a
// time), the throughput with 64 checks in flight, and this process's CPU per check (the
// database's or Redis's own CPU is not included). Writes bench/results/cluster.{json,md}.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { generateAgentKey } from '../packages/protocol/dist/index.js';
import {
  ensureDebianPackage,
  fmt,
  freePort,
  hasCommand,
  machine,
  mdTable,
  percentile,
  REPO,
  runWrk,
  SCALE,
  startProcess,
  writeResults,
} from './lib/common.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startUpstream } from './lib/targets.mjs';
import { createReplayCache } from '../packages/server/dist/proxy/replay-cache.js';
import {
  createPostgresReplayGuard,
  createRedisReplayGuard,
} from '../packages/server/dist/proxy/replay-shared.js';
import { openPostgresStore } from '../packages/server/dist/store/postgres.js';

export const name = 'cluster';

const LONE = Math.max(200, Math.round(2000 * SCALE));
const BULK = Math.max(2000, Math.round(20_000 * SCALE));
const IN_FLIGHT = 64;
const PG_SERVER = process.env.NEXUS_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

const NEXUS_BIN = join(REPO, 'packages/cli/bin/nexus.js');
const ROUNDS = Number(process.env.BENCH_CLUSTER_ROUNDS ?? 3);
const SECONDS = Math.max(2, Math.round(Number(process.env.BENCH_CLUSTER_SECONDS ?? 4) * SCALE));
const WARMUP_SECONDS = 2;
const NODES = [1, 2, 3];
// The audience every node verifies against (proxy.public_url): one for the whole cluster.
const PUBLIC_URL = 'http://nexus-cluster.bench';

/** A node's directory and config; the first runs `nexus init`, the others share its key. */
async function prepareNode({ upstream, store, redisUrl, first }) {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-cluster-'));
  if (first === undefined) {
    const init = spawnSync(
      process.execPath,
      [NEXUS_BIN, 'init', '--dir', dir, ...(store ? ['--store', store] : [])],
      { encoding: 'utf8' },
    );
    if (init.status !== 0) throw new Error(`nexus init failed: ${init.stderr}`);
  } else {
    // Every node of a cluster unseals the same vault: the same master key.
    mkdirSync(join(dir, '.nexus'), { mode: 0o700 });
    copyFileSync(join(first.dir, '.nexus', 'master.key'), join(dir, '.nexus', 'master.key'));
  }
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const configPath = join(dir, 'nexus.yaml');
  writeFileSync(
    configPath,
    stringify({
      version: 1,
      authority: { lease_ttl: '1h' },
      proxy: { listen: `127.0.0.1:${proxyPort}`, public_url: PUBLIC_URL, max_body: '8MiB' },
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: 'warn', access: false },
      ...(store ? { store } : {}),
      ...(redisUrl ? { redis: { url: redisUrl, key_prefix: 'bench:' } } : {}),
      services: {
        bench: { upstream: upstream.origin, auth: { type: 'bearer', credential: 'bench-token' } },
      },
      agents: { 'bench-ed': { roles: ['bench'] } },
      policies: [{ id: 'bench-allow', allow: { roles: ['bench'], services: ['bench'] } }],
    }),
  );
  const token =
    first === undefined
      ? readFileSync(join(dir, '.nexus', 'operator.token'), 'utf8').trim()
      : first.token;
  return {
    dir,
    configPath,
    proxy: `http://127.0.0.1:${proxyPort}`,
    admin: `http://127.0.0.1:${adminPort}`,
    token,
  };
}

function upNode(node) {
  return startProcess(process.execPath, [NEXUS_BIN, 'up', '--config', node.configPath], {
    ready: (o) => o.includes('Nexus admin API listening'),
    name: 'nexus',
  });
}

async function adminCall(node, method, path, body) {
  const res = await fetch(node.admin + path, {
    method,
    headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** The credential and one lease (with its key, for pre-signing), made through `node`. */
async function enroll(node) {
  const proc = await upNode(node);
  try {
    await adminCall(node, 'PUT', '/v1/credentials/bench-token', {
      fields: { value: 'bench-secret-token-0123456789abcdef' },
    });
    const { enrollment_token } = await adminCall(
      node,
      'POST',
      '/v1/agents/bench-ed/enrollment-tokens',
    );
    const key = await generateAgentKey('ed25519', { extractable: true });
    const res = await fetch(`${node.proxy}/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollment_token, jwk: key.publicJwk }),
    });
    if (res.status !== 201) throw new Error(`enroll: ${res.status} ${await res.text()}`);
    const { lease } = await res.json();
    const privateJwk = await globalThis.crypto.subtle.exportKey('jwk', key.privateKey);
    return importLeaseKeys([{ agent: 'bench-ed', alg: 'ed25519', lease, privateJwk }]);
  } finally {
    await proc.stop();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * One round of one configuration: `nodes` started, one wrk per node at once, each with
 * its own pre-signed requests; the aggregate of the window.
 */
async function round(nodes, keys, tmp, body, bodyFile, tag, redisPid) {
  const files = [];
  const warmFiles = [];
  for (let i = 0; i < nodes.length; i++) {
    const file = join(tmp, `${tag}-${i}.req`);
    const warmFile = join(tmp, `${tag}-${i}-warm.req`);
    // Sized generously (one node saturates near 2,000 req/s here): never wrapped.
    for (const [f, s] of [
      [file, SECONDS],
      [warmFile, WARMUP_SECONDS],
    ]) {
      await presign({
        file: f,
        count: 4000 * s,
        keys,
        method: 'POST',
        url: `${PUBLIC_URL}/bench/small`,
        body,
      });
    }
    files.push(file);
    warmFiles.push(warmFile);
  }
  const procs = [];
  try {
    for (const node of nodes) procs.push(await upNode(node));
    const pids = () => procs.map((p) => p.pid);
    // Each fresh node is warmed up first (unmeasured), as in the paths scenario: a cold
    // node runs its first thousands of requests in V8's unoptimised tiers.
    await Promise.all(
      nodes.map((node, i) =>
        runWrk({
          url: `${node.proxy}/bench/small`,
          requestsFile: warmFiles[i],
          bodyFile,
          method: 'POST',
          connections: 64,
          seconds: WARMUP_SECONDS,
        }),
      ),
    );
    const runs = await Promise.all(
      nodes.map((node, i) =>
        runWrk({
          url: `${node.proxy}/bench/small`,
          requestsFile: files[i],
          bodyFile,
          method: 'POST',
          connections: 64,
          seconds: SECONDS,
          // Every wrk measures all the nodes over the same window; the first one's is used.
          watch: { nexus: pids, redis: () => (redisPid === undefined ? [] : [redisPid]) },
        }),
      ),
    );
    const total = runs.reduce((a, r) => a + r.total, 0);
    return {
      rps: runs.reduce((a, r) => a + r.rps, 0),
      per_node_rps: runs.map((r) => r.rps),
      p99_ms: Math.max(...runs.map((r) => r.latency.p99 ?? 0)),
      cpu_us_per_request: (runs[0].cpu_seconds.nexus * 1e6) / Math.max(1, total),
      redis_cpu_us_per_request: (runs[0].cpu_seconds.redis * 1e6) / Math.max(1, total),
      non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
      socket_errors: runs.reduce((a, r) => a + r.socketErrors, 0),
      wrapped: runs.reduce((a, r) => a + r.wrapped, 0),
      load: loadavg()[0],
    };
  } finally {
    for (const p of procs) await p.stop();
  }
}

/** 1, 2 and 3 nodes on PostgreSQL + Redis, and one node on SQLite, alternating rounds. */
async function throughput(redisUrl, redisPid) {
  if (!ensureDebianPackage('wrk', 'wrk')) {
    console.log('wrk is not available: the end-to-end cluster rows are skipped');
    return undefined;
  }
  const upstream = await startUpstream();
  const dbName = `nexus_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  try {
    const store = `${PG_SERVER}/${dbName}`;
    const sqlite = await prepareNode({ upstream });
    const first = await prepareNode({ upstream, store, redisUrl });
    const cluster = [first];
    for (let i = 1; i < Math.max(...NODES); i++) {
      cluster.push(await prepareNode({ upstream, store, redisUrl, first }));
    }
    const sqliteKeys = await enroll(sqlite);
    const clusterKeys = await enroll(first);
    const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-cluster-req-'));
    const body = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
    const bodyFile = join(tmp, 'small.body');
    writeFileSync(bodyFile, body);
    const configs = [
      { label: '1 node, SQLite (reference)', nodes: [sqlite], keys: sqliteKeys, redis: false },
      ...NODES.map((k) => ({
        label: `${k} node${k > 1 ? 's' : ''}, PostgreSQL + Redis`,
        nodes: cluster.slice(0, k),
        keys: clusterKeys,
        redis: true,
      })),
    ];
    const results = configs.map(() => []);
    let n = 0;
    const loads = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const order = configs.map((_, i) => i);
      if (r % 2 === 0) order.reverse();
      for (const i of order) {
        const c = configs[i];
        const row = await round(
          c.nodes,
          c.keys,
          tmp,
          body,
          bodyFile,
          `r${n++}`,
          c.redis ? redisPid : undefined,
        );
        loads.push(row.load);
        results[i].push(row);
        console.log(
          `round ${r}, ${c.label}: ${Math.round(row.rps)} req/s (${row.per_node_rps.map((x) => Math.round(x)).join(' + ')}), ${Math.round(row.cpu_us_per_request)} us Nexus CPU/request, non-2xx ${row.non2xx}, load ${row.load.toFixed(1)}`,
        );
      }
    }
    const rows = configs.map((c, i) => ({
      label: c.label,
      nodes: c.nodes.length,
      rounds: results[i],
      rps: median(results[i].map((x) => x.rps)),
      p99_ms: median(results[i].map((x) => x.p99_ms)),
      cpu_us_per_request: median(results[i].map((x) => x.cpu_us_per_request)),
      redis_cpu_us_per_request: c.redis
        ? median(results[i].map((x) => x.redis_cpu_us_per_request))
        : undefined,
      non2xx: results[i].reduce((a, x) => a + x.non2xx, 0),
      wrapped: results[i].reduce((a, x) => a + x.wrapped, 0),
    }));
    return { rows, loads };
  } finally {
    await upstream.proc.stop();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
}

async function measure(label, guard) {
  const lease = randomBytes(16).toString('base64url');
  const expires = Math.floor(Date.now() / 1000) + 60;
  let n = 0;
  const nonce = () => `${(n++).toString(36)}-${randomBytes(12).toString('base64url')}`;
  // Warm-up (connections, JIT).
  for (let i = 0; i < 100; i++) await guard.checkAndRecord(lease, nonce(), expires);
  const lat = [];
  for (let i = 0; i < LONE; i++) {
    const t0 = performance.now();
    await guard.checkAndRecord(lease, nonce(), expires);
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < BULK) {
        next++;
        await guard.checkAndRecord(lease, nonce(), expires);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // The replay must still be refused (the bench measures the real, atomic path).
  const replayed = nonce();
  await guard.checkAndRecord(lease, replayed, expires);
  let refused = false;
  try {
    await guard.checkAndRecord(lease, replayed, expires);
  } catch (e) {
    refused = e.code === 'replay_detected';
  }
  if (!refused) throw new Error(`${label}: a replay was not refused`);
  return {
    label,
    lone_p50_ms: percentile(lat, 50),
    lone_p99_ms: percentile(lat, 99),
    per_second: BULK / seconds,
    cpu_us_per_check: ((cpu.user + cpu.system) / BULK) | 0,
  };
}

export async function run() {
  // One private redis-server for the end-to-end rows and the replay check alone.
  let redisServer;
  let redisUrl;
  if (hasCommand('redis-server')) {
    const port = await freePort();
    redisServer = await startProcess(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { ready: (out) => out.includes('Ready to accept connections'), name: 'redis-server' },
    );
    redisUrl = `redis://127.0.0.1:${port}`;
  } else {
    console.log('redis-server is not available: the Redis rows are skipped');
  }
  try {
    await runAll(redisUrl, redisServer?.pid);
  } finally {
    await redisServer?.stop();
  }
}

async function runAll(redisUrl, redisPid) {
  const loadBefore = loadavg();
  const e2e = redisUrl === undefined ? undefined : await throughput(redisUrl, redisPid);
  const rows = [];
  const clock = Date.now;
  rows.push(
    await measure(
      'in memory (one node)',
      createReplayCache({ maxEntries: 10_000_000, skewSeconds: 5, clock }),
    ),
  );

  const dbName = `nexus_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${PG_SERVER}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  try {
    const store = await openPostgresStore(`${PG_SERVER}/${dbName}`, { maxConnections: 16 });
    try {
      const guard = createPostgresReplayGuard(store.pool, {
        skewSeconds: 5,
        clock,
        sweepIntervalMs: 0,
      });
      rows.push(await measure('PostgreSQL (unique insert)', guard));
    } finally {
      await store.close();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }

  if (redisUrl !== undefined) {
    const redis = new Redis(redisUrl, { enableOfflineQueue: true });
    try {
      rows.push(
        await measure(
          'Redis (SET NX PX)',
          createRedisReplayGuard(redis, 'bench-alone:', { skewSeconds: 5, clock }),
        ),
      );
    } finally {
      await redis.quit();
    }
  }

  const cores = availableParallelism();
  const note =
    cores <= 2
      ? `This machine has ${cores} cores: the nodes, PostgreSQL, Redis, the upstream and the generators (one wrk per node) share them, so the rows show the cost of shared state, not scaling: more nodes cannot get more cores here.`
      : `This machine has ${cores} cores; the nodes, PostgreSQL, Redis, the upstream and the generators still share them.`;
  const md = ['# Cluster', ''];
  if (e2e !== undefined) {
    md.push(
      `${new Date().toISOString()}, \`node bench/run.mjs --only cluster\`: 1 KiB POST saturation, one wrk (64 connections, pre-signed Ed25519 requests) per node at once, no load balancer, ${SECONDS} s per round after a ${WARMUP_SECONDS} s warm-up of the fresh nodes, ${ROUNDS} alternating rounds; medians. Load average (1 min) before: ${loadBefore[0].toFixed(1)}; after each round, in order: ${e2e.loads.map((l) => l.toFixed(1)).join(', ')}.`,
      '',
      mdTable(
        [
          'configuration',
          'aggregate req/s',
          'rounds (req/s)',
          'worst node p99 ms',
          'Nexus CPU us/request',
          'Redis CPU us/request',
          'non-2xx',
        ],
        e2e.rows.map((c) => [
          c.label,
          fmt(c.rps),
          c.rounds.map((x) => fmt(x.rps)).join(' / '),
          fmt(c.p99_ms, 1),
          fmt(c.cpu_us_per_request),
          c.redis_cpu_us_per_request === undefined ? '-' : fmt(c.redis_cpu_us_per_request),
          String(c.non2xx),
        ]),
      ),
      '',
      note,
      '',
    );
    console.log(note);
  }
  md.push(
    '## Shared replay, the check alone',
    '',
    `Lone: ${LONE} checks one at a time. In flight: ${BULK} checks, ${IN_FLIGHT} at a time. CPU: this process only.`,
    '',
    mdTable(
      ['replay records', 'lone p50 ms', 'lone p99 ms', 'checks/s (64 in flight)', 'CPU us/check'],
      rows.map((r) => [
        r.label,
        fmt(r.lone_p50_ms, 3),
        fmt(r.lone_p99_ms, 3),
        fmt(r.per_second),
        String(r.cpu_us_per_check),
      ]),
    ),
    '',
  );
  const text = md.join('\n');
  writeResults(
    'cluster',
    { machine: machine(), lone: LONE, bulk: BULK, rows, e2e, note, load_before: loadBefore },
    text,
  );
  console.log(text);
}
