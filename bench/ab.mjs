// A/B comparison of two builds of Nexus in the same run: `node bench/ab.mjs OTHER_CHECKOUT`
// starts one upstream, a Nexus node from this checkout (B) and one from OTHER_CHECKOUT (A,
// e.g. a `git worktree` of the commit before a change, built with `npx tsc -b`), then
// alternates POST saturation runs (wrk, pre-signed Ed25519 requests) between them,
// BENCH_AB_ROUNDS times (default 5) for BENCH_AB_SECONDS each (default 5): 1 KiB bodies
// both ways on 64 connections, or with BENCH_AB_BODY=1MiB 1 MiB bodies both ways on 8
// connections (the paths scenario's two saturation rows, bench/lib/payload.mjs),
// and prints each round and the medians of req/s and Nexus CPU per request, whole process
// and its main (JavaScript) thread alone (from /proc/<pid>/task/<pid>/stat). Alternating
// in one run is what makes a before/after figure meaningful on a shared machine whose
// speed drifts between runs. Not part of `npm run bench`.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensureDebianPackage, runWrk, stopAll } from './lib/common.mjs';
import { benchPayload } from './lib/payload.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

const other = process.argv[2];
if (!other) {
  console.error('usage: node bench/ab.mjs OTHER_CHECKOUT (built with npx tsc -b)');
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_AB_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_AB_SECONDS ?? 5);
const here = resolve(import.meta.dirname, '..');

async function startNode(root, upstream) {
  const nexus = await startNexusNode(upstream, {
    root,
    agents: [{ name: 'bench-ed', alg: 'ed25519', count: 1 }],
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
  console.log(`${payload.size} bodies, ${payload.connections} connections, ${SECONDS} s rounds`);
  let n = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const label of round % 2 === 1 ? ['A', 'B'] : ['B', 'A']) {
      const node = nodes[label];
      const file = join(tmp, `req-${n++}.req`);
      // Sized generously: a nonce is never replayed within a run.
      await presign({
        file,
        count: payload.perSecond * SECONDS,
        keys: node.keys,
        method: 'POST',
        url: `${node.origin}${payload.path}`,
        body,
      });
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
  for (const label of ['A', 'B']) {
    const rs = results[label];
    console.log(
      `${label} (${nodes[label].root}): median ${Math.round(median(rs.map((x) => x.rps)))} req/s, ${Math.round(median(rs.map((x) => x.cpuUs)))} us CPU/request, main thread ${Math.round(median(rs.map((x) => x.mainUs)))} us/request`,
    );
  }
  const ratio = median(results.B.map((x) => x.rps)) / median(results.A.map((x) => x.rps));
  console.log(`B/A throughput: ${ratio.toFixed(2)}x`);
} finally {
  await stopAll();
}
