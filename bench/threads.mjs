// Bench scenario "threads": where the Nexus process spends CPU, per thread kind (main
// JavaScript thread, and the others: libuv threadpool where WebCrypto verifies, the audit
// worker thread, V8 helper threads), user vs system time, during 1 KiB saturation with
// Ed25519 and P-256 agents. Writes bench/results/threads.{json,md}.
import { readdirSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ensureDebianPackage,
  fmt,
  machine,
  mdTable,
  runWrk,
  secs,
  stopAll,
  writeResults,
} from './lib/common.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

export const name = 'threads';
const SECONDS = secs(6);

function threads(pid) {
  const out = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { comm, user: Number(rest[11]) / 100, sys: Number(rest[12]) / 100 });
    } catch {
      // thread exited
    }
  }
  return out;
}

function kind(pid, tid, comm) {
  if (String(pid) === tid) return 'main JavaScript thread';
  if (comm.startsWith('libuv-worker')) return 'libuv threadpool (WebCrypto verify, digest)';
  if (comm.startsWith('V8')) return 'V8 helper threads (GC, compiler)';
  // Node 20 leaves the libuv threadpool, V8 helper threads and worker threads unnamed
  // ("node").
  return comm === 'node'
    ? 'other threads (libuv threadpool: WebCrypto verify, large digests; audit worker: SQLite writes; V8 GC)'
    : `other (${comm})`;
}

export async function run() {
  if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required');
  const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-threads-'));
  const body = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
  writeFileSync(join(tmp, 'body'), body);
  const upstream = await startUpstream();
  const rows = [];
  const result = { meta: machine(), runs: {} };
  try {
    for (const alg of ['ed25519', 'ecdsa-p256']) {
      const nexus = await startNexusNode(upstream, {
        agents: [{ name: `t-${alg}`, alg, count: 1 }],
      });
      const keys = await importLeaseKeys(nexus.leases);
      const url = `${nexus.origin}/bench/small`;
      const warm = join(tmp, `warm-${alg}`);
      await presign({ file: warm, count: 8000, keys, method: 'POST', url, body });
      await runWrk({
        url,
        requestsFile: warm,
        bodyFile: join(tmp, 'body'),
        connections: 64,
        seconds: 2,
      });
      const file = join(tmp, `req-${alg}`);
      await presign({ file, count: 6000 * SECONDS + 5000, keys, method: 'POST', url, body });
      const before = threads(nexus.proc.pid);
      const r = await runWrk({
        url,
        requestsFile: file,
        bodyFile: join(tmp, 'body'),
        connections: 64,
        seconds: SECONDS,
      });
      const after = threads(nexus.proc.pid);
      const by = new Map();
      for (const [tid, a] of after) {
        const b = before.get(tid) ?? { user: 0, sys: 0 };
        const k = kind(nexus.proc.pid, tid, a.comm);
        const cur = by.get(k) ?? { user: 0, sys: 0 };
        cur.user += a.user - b.user;
        cur.sys += a.sys - b.sys;
        by.set(k, cur);
      }
      await nexus.proc.stop();
      const n = Math.max(1, r.total);
      const kinds = Object.fromEntries(
        [...by].map(([k, v]) => [
          k,
          { ...v, us_per_req: ((v.user + v.sys) / n) * 1e6, cores: (v.user + v.sys) / SECONDS },
        ]),
      );
      result.runs[alg] = { rps: r.rps, non2xx: r.non2xx, kinds };
      for (const [k, v] of Object.entries(kinds)) {
        rows.push([
          alg,
          k,
          fmt(v.cores, 2),
          fmt((v.user / n) * 1e6),
          fmt((v.sys / n) * 1e6),
          fmt(v.us_per_req),
        ]);
      }
      console.log(`  ${alg}: ${fmt(r.rps)} req/s (non-2xx ${r.non2xx})`);
    }
  } finally {
    await stopAll();
  }
  const md = [
    '# Nexus CPU by thread kind under 1 KiB saturation',
    '',
    `${result.meta.date}, Node ${result.meta.node}, ${result.meta.cpus}; wrk 64 connections, ${SECONDS} s. ` +
      Object.entries(result.runs)
        .map(([a, r]) => `${a}: ${fmt(r.rps)} req/s`)
        .join(', ') +
      '.',
    '',
    mdTable(
      ['agent key', 'thread kind', 'cores used', 'user us/req', 'system us/req', 'total us/req'],
      rows,
    ),
    '',
  ].join('\n');
  writeResults('threads', result, md);
  console.log(md);
}
