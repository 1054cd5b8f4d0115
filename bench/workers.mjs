// Bench scenario "workers": `nexus up --workers N` (issue 13, issue 14 step 4). The same
// store, config and agent served by `nexus up` with 1 worker (one process, the default)
// and with 2 workers (node:cluster, replay records shared through the SQLite store):
// 1 KiB POST saturation (wrk, 64 connections, pre-signed Ed25519 requests), alternating
// BENCH_WORKERS_ROUNDS rounds (default 3) of BENCH_WORKERS_SECONDS (default 5, scaled),
// with req/s, p50/p99 and CPU per request of every Nexus process (primary and workers).
// Each round starts the node afresh and warms it up for WARMUP_SECONDS first (unmeasured),
// as the paths scenario does: a cold node runs its first thousands of requests in V8's
// unoptimised tiers, which measured a 1-worker node at about half the in-process rate.
// Each count has a store of its own. Writes bench/results/workers.{json,md}.
//
// BENCH_WORKERS_BASE=<another checkout, built with npx tsc -b> adds a third configuration
// in the same alternating rounds: 2 workers of that checkout (e.g. the commit before a
// change to the workers' shared state), so a before/after figure comes from one run.
//
// On a 2-core machine wrk, the upstream and Nexus share the cores: two workers cannot get
// a core each, so the 2-worker figure there says what the cost of sharing is, not what a
// machine with spare cores would gain. The output says so.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateAgentKey } from '../packages/protocol/dist/index.js';
import {
  childPids,
  ensureDebianPackage,
  fmt,
  freePort,
  machine,
  mdTable,
  REPO,
  runWrk,
  SCALE,
  startProcess,
  stopAll,
  writeResults,
} from './lib/common.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { createReplayCache } from '../packages/server/dist/proxy/replay-cache.js';
import { openSqliteStore } from '../packages/server/dist/store/sqlite.js';
import { startUpstream } from './lib/targets.mjs';
import { auditBatch } from './lib/audit-batch.mjs';

export const name = 'workers';

const NEXUS_BIN = join(REPO, 'packages/cli/bin/nexus.js');
const BASE = process.env.BENCH_WORKERS_BASE;
const BASE_BIN = BASE === undefined ? undefined : join(BASE, 'packages/cli/bin/nexus.js');
const ROUNDS = Number(process.env.BENCH_WORKERS_ROUNDS ?? 3);
const SECONDS = Math.max(2, Math.round(Number(process.env.BENCH_WORKERS_SECONDS ?? 5) * SCALE));
const WARMUP_SECONDS = 2;

/** A store and config made by `nexus init`, served to the bench agent's upstream. */
async function prepare(upstream, bin) {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-workers-'));
  const init = spawnSync(process.execPath, [bin, 'init', '--dir', dir], {
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(`nexus init failed: ${init.stderr}`);
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const configPath = join(dir, 'nexus.yaml');
  writeFileSync(
    configPath,
    stringify({
      version: 1,
      authority: { lease_ttl: '1h' },
      proxy: { listen: `127.0.0.1:${proxyPort}`, max_body: '8MiB' },
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: 'warn', access: false },
      services: {
        bench: { upstream: upstream.origin, auth: { type: 'bearer', credential: 'bench-token' } },
      },
      agents: { 'bench-ed': { roles: ['bench'] } },
      policies: [{ id: 'bench-allow', allow: { roles: ['bench'], services: ['bench'] } }],
    }),
  );
  const token = readFileSync(join(dir, '.nexus', 'operator.token'), 'utf8').trim();
  return {
    bin,
    dir,
    configPath,
    proxy: `http://127.0.0.1:${proxyPort}`,
    admin: `http://127.0.0.1:${adminPort}`,
    token,
  };
}

async function up(setup, workers) {
  const proc = await startProcess(
    process.execPath,
    [setup.bin, 'up', '--config', setup.configPath, '--workers', String(workers)],
    { ready: (o) => o.includes('Nexus admin API listening'), name: `nexus x${workers}` },
  );
  return { proc, pids: () => [proc.pid, ...childPids(proc.pid)] };
}

async function stop(proc) {
  await proc.stop();
}

async function admin(setup, method, path, body) {
  const res = await fetch(setup.admin + path, {
    method,
    headers: { authorization: `Bearer ${setup.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** The credential and one lease (with its key, for pre-signing), made through a 1-worker node. */
async function enrollBench(setup) {
  const { proc } = await up(setup, 1);
  try {
    await admin(setup, 'PUT', '/v1/credentials/bench-token', {
      fields: { value: 'bench-secret-token-0123456789abcdef' },
    });
    const { enrollment_token } = await admin(
      setup,
      'POST',
      '/v1/agents/bench-ed/enrollment-tokens',
    );
    const key = await generateAgentKey('ed25519', { extractable: true });
    const res = await fetch(`${setup.proxy}/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollment_token, jwk: key.publicJwk }),
    });
    if (res.status !== 201) throw new Error(`enroll: ${res.status} ${await res.text()}`);
    const { lease } = await res.json();
    const privateJwk = await globalThis.crypto.subtle.exportKey('jwk', key.privateKey);
    return importLeaseKeys([{ agent: 'bench-ed', alg: 'ed25519', lease, privateJwk }]);
  } finally {
    await stop(proc);
  }
}

/**
 * The in-memory replay check alone (every worker's pre-filter): lone, one check at a time;
 * CPU: this process's, per check, over 64 checks in flight.
 */
async function replayCost(label, guard) {
  const lease = randomBytes(16).toString('base64url');
  const expires = Math.floor(Date.now() / 1000) + 60;
  let n = 0;
  const nonce = () => `${(n++).toString(36)}-${randomBytes(12).toString('base64url')}`;
  for (let i = 0; i < 200; i++) await guard.checkAndRecord(lease, nonce(), expires);
  const lat = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    await guard.checkAndRecord(lease, nonce(), expires);
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  const BULK = 20_000;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < BULK) {
        next++;
        await guard.checkAndRecord(lease, nonce(), expires);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    label,
    lone_p50_us: lat[Math.floor(lat.length / 2)] * 1000,
    lone_p99_us: lat[Math.floor(lat.length * 0.99)] * 1000,
    per_second: BULK / seconds,
    cpu_us_per_check: (cpu.user + cpu.system) / BULK,
  };
}

/**
 * What the shared replay record adds to the audit thread (workers): group commits of 27
 * records (the batch size at saturation, docs/performance.md) through the store's linked
 * append, without and with a replay claim per record, alternating; CPU of this process per
 * record, medians of the rounds.
 */
async function claimCost(path) {
  const store = openSqliteStore(path, { create: false, migrate: false });
  const record = JSON.stringify({ v: 1, kind: 'request', pad: 'x'.repeat(600) });
  const forgetAt = Date.now() + 60_000;
  const BATCH = 27;
  const BATCHES = 150;
  const round = async (claimed) => {
    const cpu0 = process.cpuUsage();
    for (let b = 0; b < BATCHES; b++) {
      const claims = claimed
        ? {
            claims: Array.from({ length: BATCH }, () => ({
              key: randomBytes(32).toString('base64url'),
              forgetAt,
              exclusive: true,
            })),
            now: Date.now(),
          }
        : undefined;
      await store.appendAuditLinked(
        (last, _hashAt, refused) =>
          auditBatch(last, refused, { count: BATCH, record, agent: 'bench-ed', service: 'bench' }),
        claims,
      );
    }
    const cpu = process.cpuUsage(cpu0);
    return (cpu.user + cpu.system) / (BATCHES * BATCH);
  };
  const without = [];
  const withClaims = [];
  try {
    await round(false);
    for (let r = 0; r < 5; r++) {
      if (r % 2 === 0) {
        without.push(await round(false));
        withClaims.push(await round(true));
      } else {
        withClaims.push(await round(true));
        without.push(await round(false));
      }
    }
  } finally {
    await store.close();
  }
  return {
    batch: BATCH,
    without_us_per_record: median(without),
    with_us_per_record: median(withClaims),
    rounds: { without, with: withClaims },
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function run() {
  if (!ensureDebianPackage('wrk', 'wrk')) {
    console.log('wrk is not available: workers scenario skipped');
    return;
  }
  const upstream = await startUpstream();
  try {
    // A store for each: switching one store between one process and workers would add
    // the replay barrier of a mode change (docs/deploy.md) to the rounds.
    const configs = [
      { label: '1', workers: 1, bin: NEXUS_BIN },
      { label: '2', workers: 2, bin: NEXUS_BIN },
      ...(BASE_BIN === undefined ? [] : [{ label: '2 (base)', workers: 2, bin: BASE_BIN }]),
    ];
    const setups = {};
    for (const c of configs) {
      const setup = await prepare(upstream, c.bin);
      setups[c.label] = { setup, keys: await enrollBench(setup) };
    }
    const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-workers-req-'));
    const body = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
    const bodyFile = join(tmp, 'small.body');
    writeFileSync(bodyFile, body);
    const results = Object.fromEntries(configs.map((c) => [c.label, []]));
    const load = [];
    let n = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const { label, workers } of round % 2 === 1 ? configs : [...configs].reverse()) {
        const { setup, keys } = setups[label];
        const file = join(tmp, `req-${n++}.req`);
        const warmFile = join(tmp, `req-${n++}.req`);
        // Sized generously: a nonce is never replayed within a run.
        for (const [f, s] of [
          [file, SECONDS],
          [warmFile, WARMUP_SECONDS],
        ]) {
          await presign({
            file: f,
            count: 6000 * s,
            keys,
            method: 'POST',
            url: `${setup.proxy}/bench/small`,
            body,
          });
        }
        const node = await up(setup, workers);
        try {
          await runWrk({
            url: `${setup.proxy}/bench/small`,
            requestsFile: warmFile,
            bodyFile,
            method: 'POST',
            connections: 64,
            seconds: WARMUP_SECONDS,
          });
          const r = await runWrk({
            url: `${setup.proxy}/bench/small`,
            requestsFile: file,
            bodyFile,
            method: 'POST',
            connections: 64,
            seconds: SECONDS,
            watch: {
              nexus: node.pids,
              primary: () => (workers > 1 ? [node.proc.pid] : []),
              upstream: () => [upstream.proc.pid],
            },
          });
          const row = {
            label,
            workers,
            rps: r.rps,
            p50_ms: r.latency.p50,
            p99_ms: r.latency.p99,
            cpu_us_per_request: (r.cpu_seconds.nexus * 1e6) / Math.max(1, r.total),
            primary_cpu_us_per_request: (r.cpu_seconds.primary * 1e6) / Math.max(1, r.total),
            upstream_cpu_us_per_request: (r.cpu_seconds.upstream * 1e6) / Math.max(1, r.total),
            wrk_cpu_seconds: r.cpu_seconds.wrk,
            non2xx: r.non2xx,
            socket_errors: r.socketErrors,
          };
          results[label].push(row);
          load.push(loadavg()[0]);
          console.log(
            `round ${round}, ${label} worker(s): ${Math.round(r.rps)} req/s, p99 ${fmt(r.latency.p99, 1)} ms, ${Math.round(row.cpu_us_per_request)} us Nexus CPU/request, non-2xx ${r.non2xx}`,
          );
        } finally {
          await stop(node.proc);
        }
      }
    }
    const memory = createReplayCache({ maxEntries: 1_000_000, skewSeconds: 5, clock: Date.now });
    const replay = [await replayCost('in-memory cache (every worker)', memory)];
    for (const r of replay) {
      console.log(
        `replay check, ${r.label}: lone p50 ${fmt(r.lone_p50_us, 1)} us, p99 ${fmt(r.lone_p99_us, 1)} us, ${fmt(r.per_second)} checks/s, ${fmt(r.cpu_us_per_check, 1)} us CPU/check`,
      );
    }
    const claims = await claimCost(join(setups['2'].setup.dir, '.nexus', 'nexus.db'));
    console.log(
      `audit group commit of ${claims.batch}: ${fmt(claims.without_us_per_record, 1)} us CPU/record without replay claims, ${fmt(claims.with_us_per_record, 1)} us with`,
    );
    const summary = configs.map(({ label, workers }) => ({
      label,
      workers,
      rps: median(results[label].map((x) => x.rps)),
      p99_ms: median(results[label].map((x) => x.p99_ms)),
      cpu_us_per_request: median(results[label].map((x) => x.cpu_us_per_request)),
      primary_cpu_us_per_request: median(results[label].map((x) => x.primary_cpu_us_per_request)),
      upstream_cpu_us_per_request: median(results[label].map((x) => x.upstream_cpu_us_per_request)),
      non2xx: results[label].reduce((a, x) => a + x.non2xx, 0),
    }));
    const ratio = summary[1].rps / summary[0].rps;
    const base = summary[2];
    const baseNote =
      base === undefined
        ? ''
        : `2 workers / 2 workers of ${BASE}: ${(summary[1].rps / base.rps).toFixed(2)}x req/s, ${fmt(summary[1].cpu_us_per_request - base.cpu_us_per_request)} us CPU/request.`;
    const cores = availableParallelism();
    const note =
      cores <= 2
        ? `This machine has ${cores} cores: wrk, the upstream and Nexus share them, so two workers cannot each get a core and the generator and upstream cannot be isolated; the 2-worker figure shows the cost of sharing state on this machine, not the gain on a machine with spare cores.`
        : `This machine has ${cores} cores; wrk and the upstream still run on the same machine.`;
    console.log(`2 workers / 1 worker: ${ratio.toFixed(2)}x req/s (medians of ${ROUNDS} rounds)`);
    if (baseNote !== '') console.log(baseNote);
    console.log(note);
    const md = [
      '# workers',
      '',
      `${new Date().toISOString()}, 1 KiB POST saturation, wrk 64 connections, ${SECONDS} s per round after a ${WARMUP_SECONDS} s warm-up of the fresh node, ${ROUNDS} alternating rounds; load average during the rounds ${load.map((l) => l.toFixed(1)).join(', ')}.`,
      '',
      mdTable(
        [
          'workers',
          'req/s (median)',
          'p99 ms',
          'Nexus CPU us/request',
          'of which the primary',
          'upstream CPU us/request',
          'non-2xx',
        ],
        summary.map((s) => [
          s.label,
          fmt(s.rps),
          fmt(s.p99_ms, 1),
          fmt(s.cpu_us_per_request),
          s.workers > 1 ? fmt(s.primary_cpu_us_per_request) : '-',
          fmt(s.upstream_cpu_us_per_request),
          String(s.non2xx),
        ]),
      ),
      '',
      `2 workers / 1 worker: ${ratio.toFixed(2)}x req/s.${baseNote === '' ? '' : ` ${baseNote}`}`,
      '',
      "The in-memory replay check alone (every worker's pre-filter; this process):",
      '',
      mdTable(
        ['replay check', 'lone p50 us', 'lone p99 us', 'checks/s (64 in flight)', 'CPU us/check'],
        replay.map((r) => [
          r.label,
          fmt(r.lone_p50_us, 1),
          fmt(r.lone_p99_us, 1),
          fmt(r.per_second),
          fmt(r.cpu_us_per_check, 1),
        ]),
      ),
      '',
      `The shared replay record in the audit thread (workers on SQLite): a group commit of ${claims.batch} records through the store's linked append costs ${fmt(claims.without_us_per_record, 1)} us of CPU per record without replay claims and ${fmt(claims.with_us_per_record, 1)} us with one per record (medians of 5 alternating rounds of ${150 * claims.batch} records, this process).`,
      '',
      note,
      '',
    ].join('\n');
    writeResults(
      'workers',
      { machine: machine(), rounds: results, summary, ratio, note, load, replay, claims },
      md,
    );
  } finally {
    await stopAll();
  }
}
