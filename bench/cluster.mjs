// Bench scenario "cluster": the cost of the state a cluster's nodes share (issue 13).
// Replay records three ways, driven directly as the pipeline drives them: the single
// node's in-memory cache, PostgreSQL (one unique insert per request, a temporary database
// on the server at 127.0.0.1:5432 or NEXUS_TEST_PG_URL) and Redis (one SET NX PX, a
// private redis-server on a free port). For each: the latency of a lone check (one at a
// time), the throughput with 64 checks in flight, and this process's CPU per check (the
// database's or Redis's own CPU is not included). Writes bench/results/cluster.{json,md}.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Redis } from 'ioredis';
import {
  fmt,
  freePort,
  hasCommand,
  machine,
  mdTable,
  percentile,
  SCALE,
  startProcess,
  writeResults,
} from './lib/common.mjs';
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

  if (hasCommand('redis-server')) {
    const port = await freePort();
    const server = await startProcess(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { ready: (out) => out.includes('Ready to accept connections'), name: 'redis-server' },
    );
    const redis = new Redis(`redis://127.0.0.1:${port}`, { enableOfflineQueue: true });
    try {
      rows.push(
        await measure(
          'Redis (SET NX PX)',
          createRedisReplayGuard(redis, 'bench:', { skewSeconds: 5, clock }),
        ),
      );
    } finally {
      await redis.quit();
      await server.stop();
    }
  }

  const md = [
    '# Cluster: shared replay',
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
  ].join('\n');
  writeResults('cluster', { machine: machine(), lone: LONE, bulk: BULK, rows }, md);
  console.log(md);
}
