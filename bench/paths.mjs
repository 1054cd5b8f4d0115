// Bench scenario "paths": the same upstream and payloads through every compared path, in
// the same run: direct, nginx injecting a static Authorization header, a hand-written Node
// proxy (node:http + undici) injecting one, and the full Nexus pipeline with Ed25519 and
// with P-256 agent keys. Figures: saturation throughput (wrk), latency at fixed offered
// rates (open-loop generator), 1 KiB and 1 MiB bodies, SSE time to first byte, proxy RSS
// under load, each as a ratio to direct and to nginx. Writes bench/results/paths.{json,md}.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { maybeStartNginx, startNexusNode, startNodeProxy, startUpstream } from './lib/targets.mjs';

export const name = 'paths';

const SAT_SECONDS = secs(8);
const SAT_LARGE_SECONDS = secs(5);
const RATE_SECONDS = secs(8);
const RATES = [500, 2000];
const SMALL_CONNECTIONS = 64;
const LARGE_CONNECTIONS = 8;
const SSE_COUNT = 210;

export async function run() {
  if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required for the paths scenario');
  const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-paths-'));
  const small = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
  const large = Buffer.alloc(1024 * 1024, '{"k":"abcdefghijklmnopqrstuvwxyz"}\n');
  writeFileSync(join(tmp, 'small.body'), small);
  writeFileSync(join(tmp, 'large.body'), large);
  const payloads = {
    small: { path: '/bench/small', body: small, bodyFile: join(tmp, 'small.body'), method: 'POST' },
    large: { path: '/bench/large', body: large, bodyFile: join(tmp, 'large.body'), method: 'POST' },
    sse: { path: '/bench/sse', body: undefined, bodyFile: '', method: 'GET' },
  };

  const upstream = await startUpstream();
  const results = { meta: { ...machine() }, targets: {} };
  try {
    const nginx = await maybeStartNginx(upstream);
    const nodeProxy = await startNodeProxy(upstream);
    const nexus = await startNexusNode(upstream, {
      agents: [
        { name: 'bench-ed', alg: 'ed25519', count: 1 },
        { name: 'bench-p256', alg: 'ecdsa-p256', count: 1 },
      ],
    });
    const keys = await importLeaseKeys(nexus.leases);
    const nexusUrl = (p) => `${nexus.origin}${p}`;
    const targets = [
      { id: 'direct', origin: upstream.origin, pids: () => [] },
      ...(nginx ? [{ id: 'nginx', origin: nginx.origin, pids: nginx.pids }] : []),
      { id: 'node-proxy', origin: nodeProxy.origin, pids: nodeProxy.pids },
      { id: 'nexus-ed25519', origin: nexus.origin, pids: nexus.pids, key: keys[0] },
      { id: 'nexus-p256', origin: nexus.origin, pids: nexus.pids, key: keys[1] },
    ];
    // BENCH_TARGETS=nexus-ed25519,direct: measure only those paths (quick before/after runs).
    const only = process.env.BENCH_TARGETS?.split(',');
    if (only) targets.splice(0, targets.length, ...targets.filter((t) => only.includes(t.id)));
    results.meta.nginx = Boolean(nginx);
    results.meta.upstream = 'node:http, one process (bench/lib/upstream.mjs)';
    for (const t of targets) results.targets[t.id] = { rss_peak_mib: 0 };

    // Requests for non-Nexus paths: signed the same way (same headers and bytes on the
    // wire), cycled, since only Nexus checks nonces.
    const generic = {};
    for (const [k, p] of Object.entries(payloads)) {
      generic[k] = join(tmp, `generic-${k}.req`);
      await presign({
        file: generic[k],
        count: 2000,
        keys: [keys[0]],
        method: p.method,
        url: nexusUrl(p.path),
        body: p.body,
      });
    }
    let seq = 0;
    const requestsFor = async (t, payload, count) => {
      const p = payloads[payload];
      if (!t.key) return generic[payload];
      const file = join(tmp, `req-${seq++}.req`);
      await presign({
        file,
        count,
        keys: [t.key],
        method: p.method,
        url: nexusUrl(p.path),
        body: p.body,
      });
      return file;
    };
    const upstreamPids = () => [upstream.proc.pid];

    const saturate = async (t, payload, seconds, connections) => {
      const p = payloads[payload];
      // Warm-up (also sizes the pre-signed set: never replay a nonce at Nexus).
      const warm = await runWrk({
        url: t.origin + p.path,
        requestsFile: await requestsFor(t, payload, 20_000),
        bodyFile: p.bodyFile,
        method: p.method,
        connections,
        seconds: 2,
      });
      const count = Math.ceil(Math.max(warm.rps, 500) * 3 * seconds) + 5000;
      const requestsFile = await requestsFor(t, payload, count);
      const stopRss = sampleRss(t.pids);
      const r = await runWrk({
        url: t.origin + p.path,
        requestsFile,
        bodyFile: p.bodyFile,
        method: p.method,
        connections,
        seconds,
        watch: { proxy: t.pids, upstream: upstreamPids },
      });
      const rss = stopRss();
      results.targets[t.id].rss_peak_mib = Math.max(
        results.targets[t.id].rss_peak_mib,
        rss / 2 ** 20,
      );
      return r;
    };

    console.log('saturation, 1 KiB bodies...');
    for (const t of targets) {
      const r = await saturate(t, 'small', SAT_SECONDS, SMALL_CONNECTIONS);
      results.targets[t.id].sat_small = r;
      console.log(
        `  ${t.id}: ${fmt(r.rps)} req/s (non-2xx ${r.non2xx}, wrapped ${r.wrapped}) cpu ${JSON.stringify(r.cpu_seconds)}`,
      );
    }
    console.log('saturation, 1 MiB bodies...');
    for (const t of targets) {
      const r = await saturate(t, 'large', SAT_LARGE_SECONDS, LARGE_CONNECTIONS);
      results.targets[t.id].sat_large = r;
      console.log(`  ${t.id}: ${fmt(r.rps)} req/s (non-2xx ${r.non2xx})`);
    }
    for (const rate of RATES) {
      console.log(`fixed rate ${rate} req/s, 1 KiB bodies...`);
      for (const t of targets) {
        const requestsFile = await requestsFor(t, 'small', rate * RATE_SECONDS + 100);
        const r = await runLoadgen({
          url: t.origin + payloads.small.path,
          requestsFile,
          bodyFile: payloads.small.bodyFile,
          method: 'POST',
          rate,
          seconds: RATE_SECONDS,
          connections: 64,
        });
        results.targets[t.id][`rate_${rate}`] = r;
        console.log(
          `  ${t.id}: p50 ${fmt(r.p50, 2)} p90 ${fmt(r.p90, 2)} p99 ${fmt(r.p99, 2)} ms (achieved ${fmt(r.achieved)}, non-2xx ${r.non2xx}, errors ${r.errors})`,
        );
      }
    }
    console.log('SSE time to first byte...');
    for (const t of targets) {
      const requestsFile = await requestsFor(t, 'sse', SSE_COUNT);
      const r = await runLoadgen({
        mode: 'ttfb',
        url: t.origin + payloads.sse.path,
        requestsFile,
        method: 'GET',
        count: SSE_COUNT,
        connections: 1,
      });
      results.targets[t.id].sse_ttfb = r;
      console.log(`  ${t.id}: p50 ${fmt(r.p50, 3)} p99 ${fmt(r.p99, 3)} ms (non-2xx ${r.non2xx})`);
    }
  } finally {
    await stopAll();
  }
  const md = render(results);
  writeResults(process.env.BENCH_TARGETS ? 'paths-partial' : 'paths', results, md);
  console.log(md);
  return results;
}

function render(results) {
  const T = results.targets;
  const ids = Object.keys(T);
  const direct = T.direct ?? {};
  const nginx = T.nginx;
  const cpuPerReq = (r) =>
    r?.cpu_seconds?.proxy && r.total ? (r.cpu_seconds.proxy / r.total) * 1e6 : undefined;
  const rows = [];
  const row = (label, get, digits = 0) => {
    const cells = [label];
    for (const id of ids) {
      const v = get(T[id]);
      let cell = fmt(v, digits);
      if (id !== 'direct' && v !== undefined && !Number.isNaN(v)) {
        const parts = [];
        if (get(direct) !== undefined) parts.push(`${ratio(v, get(direct))}x d`);
        if (nginx && id !== 'nginx' && get(nginx) !== undefined)
          parts.push(`${ratio(v, get(nginx))}x n`);
        if (parts.length > 0) cell += ` (${parts.join(', ')})`;
      }
      cells.push(cell);
    }
    rows.push(cells);
  };
  row('saturation, 1 KiB, req/s', (t) => t.sat_small?.rps);
  row('saturation, 1 MiB, req/s', (t) => t.sat_large?.rps, 0);
  row('saturation 1 KiB: closed-loop p99, ms', (t) => t.sat_small?.latency.p99, 2);
  for (const rate of RATES) {
    for (const p of ['p50', 'p90', 'p99'])
      row(`${rate} req/s: ${p}, ms`, (t) => t[`rate_${rate}`]?.[p], 2);
  }
  row('SSE time to first byte p50, ms', (t) => t.sse_ttfb?.p50, 3);
  row('SSE time to first byte p99, ms', (t) => t.sse_ttfb?.p99, 3);
  row(
    'proxy RSS peak under load, MiB',
    (t) => (t.rss_peak_mib ? t.rss_peak_mib : undefined),
    0,
    true,
  );
  row('proxy CPU per request (1 KiB), us', (t) => cpuPerReq(t.sat_small), 0);
  const added = ids
    .filter((id) => id !== 'direct')
    .map(
      (id) =>
        `${id}: p99 +${fmt((T[id].rate_500?.p99 ?? NaN) - (direct.rate_500?.p99 ?? NaN), 2)} ms at 500 req/s, +${fmt((T[id].rate_2000?.p99 ?? NaN) - (direct.rate_2000?.p99 ?? NaN), 2)} ms at 2000 req/s`,
    );
  const m = results.meta;
  return [
    '# Paths benchmark: direct vs nginx vs hand-written Node proxy vs Nexus',
    '',
    `${m.date}, Node ${m.node}, ${m.cpus}, ${m.memory_gib} GiB, Linux ${m.kernel}; scale ${m.scale}.`,
    `Upstream: ${m.upstream}. Saturation: wrk, 1 thread, ${SMALL_CONNECTIONS} connections (1 KiB) / ${LARGE_CONNECTIONS} (1 MiB), ${SAT_SECONDS} s / ${SAT_LARGE_SECONDS} s after a 2 s warm-up, cycling pre-signed requests (unique nonces). Fixed rates: open-loop generator (bench/lib/loadgen.mjs), ${RATE_SECONDS} s, latency from the scheduled send time, first 20% discarded. 1 KiB = 1 KiB request and response bodies; 1 MiB = 1 MiB request and response bodies.`,
    'Cells: value (ratio to direct "d", ratio to nginx "n").',
    '',
    mdTable(['figure', ...ids], rows),
    '',
    'Added p99 over direct: ' + added.join('; ') + '.',
    '',
    'Non-2xx responses (must be 0): ' +
      ids
        .map((id) => {
          const t = T[id];
          const n =
            (t.sat_small?.non2xx ?? 0) +
            (t.sat_large?.non2xx ?? 0) +
            (t.rate_500?.non2xx ?? 0) +
            (t.rate_2000?.non2xx ?? 0) +
            (t.sse_ttfb?.non2xx ?? 0);
          return `${id} ${n}`;
        })
        .join(', ') +
      '.',
    'Load generator CPU during 1 KiB saturation (s of CPU per s of run): ' +
      ids
        .map(
          (id) =>
            `${id} wrk ${fmt((T[id].sat_small?.cpu_seconds?.wrk ?? NaN) / (T[id].sat_small?.seconds ?? 1), 2)}, upstream ${fmt((T[id].sat_small?.cpu_seconds?.upstream ?? NaN) / (T[id].sat_small?.seconds ?? 1), 2)}, proxy ${fmt((T[id].sat_small?.cpu_seconds?.proxy ?? NaN) / (T[id].sat_small?.seconds ?? 1), 2)}`,
        )
        .join('; ') +
      '.',
    '',
  ].join('\n');
}
