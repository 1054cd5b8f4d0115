// Bench scenario "growth": Nexus throughput and p99 as the configuration and the live
// state grow: 10 vs 10,000 services and policy rules; 10 vs 100,000 live leases (one agent
// each). Shorter runs than "paths"; the two sides of a comparison alternate. Writes
// bench/results/growth.{json,md}.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  ensureDebianPackage,
  fmt,
  machine,
  mdTable,
  ratio,
  runLoadgen,
  runWrk,
  sampleRss,
  secs,
  stopAll,
  writeResults,
} from './lib/common.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

export const name = 'growth';

const SAT_SECONDS = secs(5);
const RATE_SECONDS = secs(5);
const RATE = 500;
const ROUNDS = 3;
const LEASES_BIG = Number(process.env.BENCH_GROWTH_LEASES ?? 100_000);

const CASES = [
  { id: 'services+rules 10', services: 10, rules: 10, leases: 1 },
  { id: 'services+rules 10,000', services: 10_000, rules: 10_000, leases: 1 },
  { id: 'leases/agents 10', services: 1, rules: 1, leases: 10 },
  {
    id: `leases/agents ${LEASES_BIG.toLocaleString('en')}`,
    services: 1,
    rules: 1,
    leases: LEASES_BIG,
  },
];

export async function run() {
  if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required');
  const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-growth-'));
  const body = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
  const bodyFile = join(tmp, 'small.body');
  writeFileSync(bodyFile, body);
  const results = { meta: machine(), cases: [] };
  const upstream = await startUpstream();
  let seq = 0;
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  try {
    // Each pair (10 vs 10,000 services and rules; 10 vs 100,000 leases) runs side by side:
    // both nodes up at once, saturation runs alternating between them ROUNDS times, medians
    // reported. On a shared machine whose speed drifts by tens of percent between minutes,
    // only an alternating comparison gives a ratio worth reading.
    for (const pair of [CASES.slice(0, 2), CASES.slice(2, 4)]) {
      const nodes = [];
      for (const c of pair) {
        const t0 = performance.now();
        const nexus = await startNexusNode(upstream, {
          services: c.services,
          rules: c.rules,
          agents: [{ name: 'grow', alg: 'ed25519', count: c.leases }],
          startTimeoutMs: 900_000,
        });
        const startSeconds = (performance.now() - t0) / 1000;
        const keys = await importLeaseKeys(nexus.leases);
        nexus.leases.length = 0;
        const url = `${nexus.origin}/bench/small`;
        const file = async (count) => {
          const f = join(tmp, `req-${seq++}`);
          await presign({ file: f, count, keys, method: 'POST', url, body });
          return f;
        };
        const warm = await runWrk({
          url,
          requestsFile: await file(15_000),
          bodyFile,
          connections: 64,
          seconds: 2,
        });
        nodes.push({ c, nexus, url, file, startSeconds, warm, sats: [], rss: 0 });
      }
      for (let round = 0; round < ROUNDS; round++) {
        for (const n of round % 2 === 0 ? nodes : [...nodes].reverse()) {
          const count = Math.ceil(Math.max(n.warm.rps, 500) * 3 * SAT_SECONDS) + 5000;
          const requestsFile = await n.file(count);
          const stopRss = sampleRss(n.nexus.pids);
          const sat = await runWrk({
            url: n.url,
            requestsFile,
            bodyFile,
            connections: 64,
            seconds: SAT_SECONDS,
            watch: { proxy: n.nexus.pids },
          });
          n.rss = Math.max(n.rss, stopRss() / 2 ** 20);
          n.sats.push(sat);
          console.log(`  ${n.c.id}, round ${round + 1}: ${fmt(sat.rps)} req/s`);
        }
      }
      for (const n of nodes) {
        const lat = await runLoadgen({
          url: n.url,
          requestsFile: await n.file(RATE * RATE_SECONDS + 100),
          bodyFile,
          method: 'POST',
          rate: RATE,
          seconds: RATE_SECONDS,
          connections: 64,
        });
        await n.nexus.proc.stop();
        const row = {
          ...n.c,
          start_seconds: n.startSeconds,
          rps: median(n.sats.map((x) => x.rps)),
          rps_rounds: n.sats.map((x) => x.rps),
          non2xx: n.sats.reduce((a, x) => a + x.non2xx, 0) + lat.non2xx,
          rss_mib: n.rss,
          p50: lat.p50,
          p99: lat.p99,
          achieved: lat.achieved,
          cpu_us_per_req: median(
            n.sats.map((x) => (x.cpu_seconds.proxy / Math.max(1, x.total)) * 1e6),
          ),
        };
        results.cases.push(row);
        console.log(
          `  ${n.c.id}: start ${fmt(n.startSeconds, 1)} s, median ${fmt(row.rps)} req/s, p99 at ${RATE} req/s ${fmt(lat.p99, 2)} ms, RSS ${fmt(n.rss)} MiB, non-2xx ${row.non2xx}`,
        );
      }
    }
  } finally {
    await stopAll();
  }
  const by = (id) => results.cases.find((x) => x.id === id);
  const rows = results.cases.map((r) => [
    r.id,
    fmt(r.start_seconds, 1),
    fmt(r.rps),
    fmt(r.cpu_us_per_req),
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    fmt(r.rss_mib),
    String(r.non2xx),
  ]);
  const small = [by(CASES[0].id), by(CASES[2].id)];
  const big = [by(CASES[1].id), by(CASES[3].id)];
  const md = [
    '# Growth benchmark: Nexus as services, rules and live leases grow',
    '',
    `${results.meta.date}, Node ${results.meta.node}, ${results.meta.cpus}; Ed25519 agents, 1 KiB POST; saturation wrk 64 connections ${SAT_SECONDS} s, the two nodes of a pair running side by side and measured alternately ${ROUNDS} times each (median; every round in growth.json); latency at ${RATE} req/s open loop ${RATE_SECONDS} s. Extra rules are spread over the extra services (each names one service, one agent, two methods and a path glob). With N leases, request i is signed with lease i mod N (each lease is one enrolled agent), so at 100,000 leases nearly every request carries a lease the proxy has not seen in the run.`,
    '',
    mdTable(
      ['case', 'start s', 'req/s', 'CPU us/req', 'p50 ms', 'p99 ms', 'RSS MiB', 'non-2xx'],
      rows,
    ),
    '',
    `Throughput ratio 10,000 / 10 services+rules: ${ratio(big[0]?.rps, small[0]?.rps)}; ${LEASES_BIG.toLocaleString('en')} / 10 leases: ${ratio(big[1]?.rps, small[1]?.rps)}.`,
    '',
  ].join('\n');
  writeResults('growth', results, md);
  console.log(md);
  return results;
}
