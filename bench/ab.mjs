// A/B comparison of two builds of Nexus in the same run: `node bench/ab.mjs OTHER_CHECKOUT`
// starts one upstream, a Nexus node from this checkout (B) and one from OTHER_CHECKOUT (A,
// e.g. a `git worktree` of the commit before a change, built with `npx tsc -b`), then
// alternates POST saturation runs (wrk, pre-signed Ed25519 requests) between them,
// BENCH_AB_ROUNDS times (default 5) for BENCH_AB_SECONDS each (default 5): 1 KiB bodies
// both ways on 64 connections, or with BENCH_AB_BODY=1MiB 1 MiB bodies both ways on 8
// connections (the paths scenario's two saturation rows, bench/lib/payload.mjs),
// and prints each round and the medians of req/s and Nexus CPU per request, whole process
// and its main (JavaScript) thread alone (from /proc/<pid>/task/<pid>/stat). With
// BENCH_AB_RATE=500 each round is instead the open-loop generator at that offered rate (the
// paths scenario's fixed-rate rows, first 20% of each round discarded), and the figures are
// the latency percentiles from the scheduled send time, the CPU per request and, from each
// node's /metrics, the mean time its requests spent in the `audit` stage (waiting for their
// request record to be durable). Alternating
// in one run is what makes a before/after figure meaningful on a shared machine whose
// speed drifts between runs. Not part of `npm run bench`.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cpuSeconds, ensureDebianPackage, runLoadgen, runWrk, stopAll } from './lib/common.mjs';
import { benchPayload } from './lib/payload.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

const other = process.argv[2];
if (!other) {
  console.error('usage: node bench/ab.mjs OTHER_CHECKOUT (built with npx tsc -b)');
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_AB_ROUNDS ?? 5);
const RATE =
  process.env.BENCH_AB_RATE === undefined ? undefined : Number(process.env.BENCH_AB_RATE);
const SECONDS = Number(process.env.BENCH_AB_SECONDS ?? 5);
const here = resolve(import.meta.dirname, '..');

async function startNode(root, upstream) {
  const nexus = await startNexusNode(upstream, {
    root,
    agents: [{ name: 'bench-ed', alg: 'ed25519', count: 1 }],
    adminExtra: { metrics: { auth: 'none' } },
  });
  return { ...nexus, root, keys: await importLeaseKeys(nexus.leases) };
}

/** CPU seconds (user + system) of the process's main thread so far. */
function mainThreadCpu(pid) {
  const f = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Sum and count of the node's `audit` stage histogram so far. */
async function auditStage(node) {
  const text = await (await fetch(`${node.adminOrigin}/metrics`)).text();
  const value = (name) =>
    Number(new RegExp(`^${name}\\{[^}]*stage="audit"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    sum: value('nexus_stage_duration_seconds_sum'),
    count: value('nexus_stage_duration_seconds_count'),
  };
}

/** One fixed-rate round against `node`: latency percentiles, CPU and audit wait per request. */
async function rateRound(node, file) {
  const cpu0 = cpuSeconds([node.proc.pid]);
  const stage0 = await auditStage(node);
  const r = await runLoadgen({
    url: `${node.origin}${payload.path}`,
    requestsFile: file,
    bodyFile,
    method: 'POST',
    rate: RATE,
    seconds: SECONDS,
    connections: 64,
  });
  const stage1 = await auditStage(node);
  const requests = Math.max(1, r.ok + r.non2xx + r.errors);
  return {
    p50: r.p50,
    p90: r.p90,
    p99: r.p99,
    cpuUs: ((cpuSeconds([node.proc.pid]) - cpu0) * 1e6) / requests,
    auditMs: ((stage1.sum - stage0.sum) * 1000) / Math.max(1, stage1.count - stage0.count),
    non2xx: r.non2xx + r.errors,
  };
}

if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required');
const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-ab-req-'));
const payload = benchPayload(process.env.BENCH_AB_BODY);
const { body } = payload;
const bodyFile = join(tmp, 'request.body');
writeFileSync(bodyFile, body);
const upstream = await startUpstream();
try {
  const nodes = {
    A: await startNode(resolve(other), upstream),
    B: await startNode(here, upstream),
  };
  const results = { A: [], B: [] };
  console.log(
    RATE === undefined
      ? `${payload.size} bodies, ${payload.connections} connections, ${SECONDS} s rounds`
      : `${payload.size} bodies, open loop at ${RATE} req/s, ${SECONDS} s rounds`,
  );
  let n = 0;
  if (RATE !== undefined) {
    // Warm-up: a fresh node's first seconds (JIT, first connections) are not the figure.
    for (const node of Object.values(nodes)) {
      const file = join(tmp, `req-${n++}.req`);
      await presign({
        file,
        count: 8000,
        keys: node.keys,
        method: 'POST',
        url: `${node.origin}${payload.path}`,
        body,
      });
      await runWrk({
        url: `${node.origin}${payload.path}`,
        requestsFile: file,
        bodyFile,
        method: 'POST',
        connections: 64,
        seconds: 3,
      });
    }
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const label of round % 2 === 1 ? ['A', 'B'] : ['B', 'A']) {
      const node = nodes[label];
      const file = join(tmp, `req-${n++}.req`);
      // Sized generously: a nonce is never replayed within a run.
      await presign({
        file,
        count: RATE === undefined ? payload.perSecond * SECONDS : RATE * SECONDS + 100,
        keys: node.keys,
        method: 'POST',
        url: `${node.origin}${payload.path}`,
        body,
      });
      if (RATE !== undefined) {
        const x = await rateRound(node, file);
        results[label].push(x);
        console.log(
          `round ${round} ${label}: p50 ${x.p50.toFixed(2)} p90 ${x.p90.toFixed(2)} p99 ${x.p99.toFixed(2)} ms, ${Math.round(x.cpuUs)} us CPU/request, audit stage ${x.auditMs.toFixed(2)} ms, non-2xx ${x.non2xx}`,
        );
        continue;
      }
      const main0 = mainThreadCpu(node.proc.pid);
      const r = await runWrk({
        url: `${node.origin}${payload.path}`,
        requestsFile: file,
        bodyFile,
        method: 'POST',
        connections: payload.connections,
        seconds: SECONDS,
        watch: { nexus: () => [node.proc.pid] },
      });
      const mainUs = ((mainThreadCpu(node.proc.pid) - main0) * 1e6) / Math.max(1, r.total);
      const cpuUs = (r.cpu_seconds.nexus * 1e6) / Math.max(1, r.total);
      results[label].push({ rps: r.rps, cpuUs, mainUs, non2xx: r.non2xx });
      console.log(
        `round ${round} ${label}: ${Math.round(r.rps)} req/s, ${Math.round(cpuUs)} us CPU/request (main thread ${Math.round(mainUs)}), non-2xx ${r.non2xx}, wrapped ${r.wrapped}`,
      );
    }
  }
  if (RATE !== undefined) {
    const med = (label, k) => median(results[label].map((x) => x[k]));
    for (const label of ['A', 'B']) {
      console.log(
        `${label} (${nodes[label].root}): median p50 ${med(label, 'p50').toFixed(2)} p90 ${med(label, 'p90').toFixed(2)} p99 ${med(label, 'p99').toFixed(2)} ms, ${Math.round(med(label, 'cpuUs'))} us CPU/request, audit stage ${med(label, 'auditMs').toFixed(2)} ms`,
      );
    }
    console.log(`B/A p99: ${(med('B', 'p99') / med('A', 'p99')).toFixed(2)}x`);
  } else {
    for (const label of ['A', 'B']) {
      const rs = results[label];
      console.log(
        `${label} (${nodes[label].root}): median ${Math.round(median(rs.map((x) => x.rps)))} req/s, ${Math.round(median(rs.map((x) => x.cpuUs)))} us CPU/request, main thread ${Math.round(median(rs.map((x) => x.mainUs)))} us/request`,
      );
    }
    const ratio = median(results.B.map((x) => x.rps)) / median(results.A.map((x) => x.rps));
    console.log(`B/A throughput: ${ratio.toFixed(2)}x`);
  }
} finally {
  await stopAll();
}
