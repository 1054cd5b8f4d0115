// Bench scenario "profile": runs the Nexus node under `node --cpu-prof` while wrk drives
// 1 KiB POSTs through the full pipeline (Ed25519 agent by default; BENCH_PROFILE_ALG=
// ecdsa-p256; BENCH_PROFILE_BODY=1MiB: 1 MiB bodies both ways on 8 connections), then
// prints the top functions by self time and by inclusive time grouped by file. Writes
// bench/results/profile-<alg>.md (profile-<alg>-1MiB.md for 1 MiB); the .cpuprofile stays
// in a temp directory (its path is printed) for Chrome DevTools.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ensureDebianPackage,
  fmt,
  machine,
  runWrk,
  secs,
  stopAll,
  threadCpuSeconds,
  writeResults,
} from './lib/common.mjs';
import { benchPayload } from './lib/payload.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

export const name = 'profile';

const SECONDS = secs(10);

/**
 * Summarises a V8 .cpuprofile: self time per function and per file (ms). With `window`
 * ({ from, to } in microseconds of CLOCK_MONOTONIC, the clock of both V8's sample
 * timestamps and `process.hrtime`), only the samples taken inside it count: start-up,
 * pre-signing and shutdown would otherwise show as idle time that the node never has
 * under load.
 */
export function summarise(profile, window) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  const counts = new Map();
  let total = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample's delta is the time since the previous sample: it belongs to this sample.
    const d = dt[i] ?? 0;
    t += d;
    if (window !== undefined && (t < window.from || t > window.to)) continue;
    total += d;
    counts.set(profile.samples[i], (counts.get(profile.samples[i]) ?? 0) + d);
  }
  if (window !== undefined && total === 0) {
    throw new Error('the profile has no sample inside the load window');
  }
  for (const [id, us] of counts) {
    const n = byId.get(id);
    const f = n.callFrame;
    const file = (f.url || '(native)').replace(/^.*\/(packages|node_modules)\//, '$1/');
    const key = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + us);
  }
  // Inclusive time per file: a sample counts once for every distinct file on its stack.
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const fileIncl = new Map();
  for (const [id, us] of counts) {
    const seen = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur).callFrame;
      const file = (f.url || '').replace(/^.*\/(packages|node_modules)\//, '$1/');
      if (file && !seen.has(file)) {
        seen.add(file);
        fileIncl.set(file, (fileIncl.get(file) ?? 0) + us);
      }
    }
  }
  // Busy time by component: each sample goes to the first matching rule over its stack
  // (leaf to root), so e.g. a SHA-256 inside the audit writer counts as audit.
  const RULES = [
    ['(idle)', /^\(idle\)$/],
    ['garbage collection', /^\(garbage collector\)$/],
    ['audit (writer, chain, SQLite store)', /dist\/(audit|store)\//],
    ['scrub (response headers and body)', /dist\/(scrub\/|proxy\/response)/],
    ['lease and signature verification, digest', /protocol\/dist\//],
    ['policy', /dist\/policy\//],
    ['mechanic and vault (credential injection)', /dist\/(mechanics|vault)\//],
    ['upstream client (undici)', /undici\//],
    ['pipeline (routing, body, records)', /dist\/proxy\//],
  ];
  const categories = new Map();
  for (const [id, us] of counts) {
    let cat = 'HTTP server, sockets, streams, other';
    outer: for (const [label, re] of RULES) {
      for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
        const f = byId.get(cur).callFrame;
        if (re.test(f.url || f.functionName)) {
          cat = label;
          break outer;
        }
      }
    }
    categories.set(cat, (categories.get(cat) ?? 0) + us);
  }
  const top = (m, n) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => ({ name: k, ms: us / 1000, pct: (100 * us) / total }));
  return {
    total_ms: total / 1000,
    self: top(self, 30),
    files: top(fileIncl, 30),
    categories: top(categories, 20),
  };
}

/**
 * On-CPU time per thread in the load window (user + system from /proc, per request). The
 * sampled profile counts wall time: a main thread that the scheduler parks while a
 * threadpool thread it has just woken runs (2 cores) shows as busy in the function that
 * woke it. These figures are the CPU each thread really used.
 */
function threadCpu(pid, before, after, requests) {
  const rows = [];
  for (const [tid, s] of after) {
    const used = s - (before.get(tid) ?? 0);
    if (used <= 0) continue;
    rows.push({ tid, main: tid === pid, us_per_request: (used * 1e6) / Math.max(1, requests) });
  }
  return rows.sort(
    (a, b) => Number(b.main) - Number(a.main) || b.us_per_request - a.us_per_request,
  );
}

function threadLines(threads) {
  if (threads.length === 0) return [];
  const total = threads.reduce((a, t) => a + t.us_per_request, 0);
  return [
    `On-CPU time per request (/proc, load window): ${fmt(total)} us in all; ${threads
      .map((t) => `${t.main ? 'main' : `thread ${t.tid}`} ${fmt(t.us_per_request)}`)
      .join(', ')}.`,
  ];
}

export async function run() {
  if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required');
  const alg = process.env.BENCH_PROFILE_ALG ?? 'ed25519';
  const payload = benchPayload(process.env.BENCH_PROFILE_BODY);
  const profDir = mkdtempSync(join(tmpdir(), 'nexus-bench-prof-'));
  const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-profile-'));
  const upstream = await startUpstream();
  let rps = 0;
  let window;
  let threads = [];
  try {
    const nexus = await startNexusNode(upstream, {
      agents: [{ name: 'bench-prof', alg, count: 1 }],
      nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir],
    });
    const keys = await importLeaseKeys(nexus.leases);
    const { body } = payload;
    writeFileSync(join(tmp, 'body'), body);
    const url = `${nexus.origin}${payload.path}`;
    const file = join(tmp, 'req');
    const count = Math.ceil((payload.perSecond * 2 * SECONDS) / 3) + payload.margin;
    await presign({ file, count, keys, method: 'POST', url, body });
    const pid = nexus.proc.pid;
    const cpuBefore = threadCpuSeconds(pid);
    const from = Number(process.hrtime.bigint() / 1000n);
    const r = await runWrk({
      url,
      requestsFile: file,
      bodyFile: join(tmp, 'body'),
      connections: payload.connections,
      seconds: SECONDS,
    });
    window = { from, to: Number(process.hrtime.bigint() / 1000n) };
    rps = r.rps;
    threads = threadCpu(pid, cpuBefore, threadCpuSeconds(pid), r.rps * SECONDS);
    console.log(
      `${fmt(r.rps)} req/s under the profiler (non-2xx ${r.non2xx}, wrapped ${r.wrapped})`,
    );
    await nexus.proc.stop();
  } finally {
    await stopAll();
  }
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (the
  // audit worker thread writes its own profile).
  const profiles = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  const prof = profiles.find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
  if (!prof) throw new Error('no profile written');
  const path = join(profDir, prof);
  const s = summarise(JSON.parse(readFileSync(path, 'utf8')), window);
  // Share of the window a thread was busy, and its busy time per request served.
  const busy = (x) =>
    x.categories.filter((c) => c.name !== '(idle)').reduce((a, c) => a + c.pct, 0);
  const usPerRequest = (pct) => (rps > 0 ? (pct * 10_000) / rps : 0);
  // Worker threads (the audit worker) sample their own JavaScript, in the same window.
  const workers = profiles
    .filter((f) => f !== prof)
    .map((f) => {
      const w = summarise(JSON.parse(readFileSync(join(profDir, f), 'utf8')), window);
      return { file: f, busy_pct: busy(w), us_per_request: usPerRequest(busy(w)), top: w.self };
    });
  const lines = [
    `# Nexus CPU profile (${alg} agent, ${payload.size} POST, wrk ${payload.connections} connections, ${SECONDS} s)`,
    '',
    `${machine().date}; ${fmt(rps)} req/s under the profiler; profile: ${path}; ${fmt(s.total_ms)} ms profiled: the load window only (start-up, pre-signing and shutdown left out).`,
    '',
    `Main thread busy ${fmt(busy(s), 1)}% of the window (${fmt(usPerRequest(busy(s)))} us of JavaScript-thread time per request).`,
    '',
    ...threadLines(threads),
    ...workers.map(
      (w) =>
        `Worker thread ${w.file}: busy ${fmt(w.busy_pct, 1)}% (${fmt(w.us_per_request)} us per request); top: ${w.top
          .filter((x) => x.name !== '(idle)')
          .slice(0, 5)
          .map((x) => `${x.name.split(' ')[0]} ${fmt(x.pct, 1)}%`)
          .join(', ')}.`,
    ),
    '',
    '## Main-thread time by component',
    '',
    '| component | ms | % |',
    '| --- | ---: | ---: |',
    ...s.categories.map((x) => `| ${x.name} | ${fmt(x.ms)} | ${fmt(x.pct, 1)} |`),
    '',
    '## Top functions by self time',
    '',
    '| function | self ms | % |',
    '| --- | ---: | ---: |',
    ...s.self.map((x) => `| ${x.name.replace(/\|/g, '\\|')} | ${fmt(x.ms)} | ${fmt(x.pct, 1)} |`),
    '',
    '## Inclusive time by file',
    '',
    '| file | ms | % |',
    '| --- | ---: | ---: |',
    ...s.files.map((x) => `| ${x.name} | ${fmt(x.ms)} | ${fmt(x.pct, 1)} |`),
    '',
  ].join('\n');
  const suffix = payload.size === '1KiB' ? '' : `-${payload.size}`;
  writeResults(
    `profile-${alg}${suffix}`,
    { alg, body: payload.size, rps, profile: path, window, threads, workers, ...s },
    lines,
  );
  console.log(lines);
}
