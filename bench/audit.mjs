// Bench scenario "audit": drives the audit writer (group commit, hash chain) and the SQLite
// store directly, as the proxy does, growing the log to 1,000,000 records (BENCH_AUDIT_
// RECORDS). Reports the append cost per record in windows at growing log sizes (batches
// of concurrent appends, as under load), the latency of a lone append (one fsync), and the
// `audit verify` rate (records/s) over the whole log. Writes bench/results/audit.{json,md}.
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign } from 'jose';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fmt, machine, mdTable, percentile, writeResults } from './lib/common.mjs';
import { openSqliteStore, verifyAuditLog } from '../packages/server/dist/index.js';
import { createAuditWriter } from '../packages/server/dist/audit/writer.js';
import { auditSinkFromStore } from '../packages/server/dist/audit/sink.js';

export const name = 'audit';

const TOTAL = Number(process.env.BENCH_AUDIT_RECORDS ?? 1_000_000);
const CONCURRENCY = 128; // appends in flight: one group-commit batch each round
const WINDOW = Math.min(20_000, Math.max(1000, Math.floor(TOTAL / 20)));
const MARKS = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 1].map((f) => Math.floor(f * TOTAL));

const b64 = (n) => Buffer.alloc(n, 7).toString('base64url');
// A record holds the lease's hash (base64url SHA-256, 43 characters), not the JWT (issue 14).
const LEASE_HASH = b64(32);

function record(i, kind) {
  return {
    v: 1,
    kind,
    time: new Date(1_780_000_000_000 + i).toISOString(),
    request_id: `req${String(i).padStart(13, '0')}`,
    agent: 'triage-bot',
    lease_id: 'bJx0cW1l2VfQe3cT9aLr8w',
    service: 'github',
    method: 'POST',
    path: `/repos/acme/widgets/issues/${i % 1000}/comments`,
    intent: 'triage new issues',
    decision: 'allow',
    rule_ids: ['triage-write'],
    policy_hash: 'a'.repeat(64),
    credential: { name: 'github-token', version: 3 },
    ...(kind === 'request'
      ? {
          signature: {
            input: `wimse=("@method" "@request-target" "workload-identity-token" "nexus-intent" "content-type" "content-digest");created=1780000000;expires=1780000030;nonce="${b64(16)}";tag="wimse-workload-to-workload";wimse-aud="http://127.0.0.1:7070/github/repos/acme/widgets/issues"`,
            value: `wimse=:${Buffer.alloc(64, i % 251).toString('base64')}:`,
            lease_hash: LEASE_HASH,
          },
        }
      : { upstream_status: 201, bytes_in: 1024, bytes_out: 1024, duration_ms: 3, redactions: 0 }),
  };
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-audit-'));
  const store = openSqliteStore(join(dir, 'audit.db'));
  // A real Ed25519 checkpoint key, stored as the Authority's would be, so verify checks
  // checkpoint signatures as it does on a real node.
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await store.insertSigningKey({
    kid: 'bench',
    alg: 'EdDSA',
    publicJwk: publicKey.export({ format: 'jwk' }),
    privateKeyEnc: 'unused-by-the-bench',
    createdAt: Date.now(),
  });
  const writer = createAuditWriter({
    sink: auditSinkFromStore(store),
    clock: Date.now,
    signCheckpoint: async (_payload, text) => ({
      kid: 'bench',
      jws: await new CompactSign(Buffer.from(text, 'utf8'))
        .setProtectedHeader({ alg: 'EdDSA', kid: 'bench' })
        .sign(privateKey),
    }),
  });
  await writer.init();
  const windows = [];
  const lone = [];
  let written = 0;
  const t0 = performance.now();
  const appendBatched = async (n) => {
    const start = performance.now();
    let done = 0;
    while (done < n) {
      const k = Math.min(CONCURRENCY, n - done);
      const ps = [];
      for (let j = 0; j < k; j++) {
        const i = written + j;
        ps.push(writer.append(record(i, i % 2 === 0 ? 'request' : 'outcome')));
      }
      await Promise.all(ps);
      written += k;
      done += k;
    }
    return (performance.now() - start) / n;
  };
  const loneAppends = async (n) => {
    const t = [];
    for (let j = 0; j < n; j++) {
      const s = performance.now();
      await writer.append(record(written, 'request'));
      written++;
      t.push(performance.now() - s);
    }
    t.sort((a, b) => a - b);
    return { p50: percentile(t, 50), p99: percentile(t, 99) };
  };
  for (const mark of MARKS) {
    if (mark > written) {
      const fill = mark - written;
      await appendBatched(fill);
      console.log(
        `  log at ${written.toLocaleString('en')} records (${fmt((performance.now() - t0) / 1000, 1)} s)`,
      );
    }
    const msPerRecord = await appendBatched(WINDOW);
    const l = await loneAppends(200);
    windows.push({
      log_size: mark,
      us_per_record_batched: msPerRecord * 1000,
      lone_p50_ms: l.p50,
      lone_p99_ms: l.p99,
    });
    lone.push(l);
    console.log(
      `  at ${mark.toLocaleString('en')}: ${fmt(msPerRecord * 1000, 1)} us/record batched; lone append p50 ${fmt(l.p50, 3)} ms p99 ${fmt(l.p99, 3)} ms`,
    );
  }
  await writer.close();
  const fillSeconds = (performance.now() - t0) / 1000;
  const vs = performance.now();
  const report = await verifyAuditLog(store);
  const verifySeconds = (performance.now() - vs) / 1000;
  await store.close();
  const dbBytes = statSync(join(dir, 'audit.db')).size;
  rmSync(dir, { recursive: true, force: true });
  if (!report.ok) throw new Error(`audit verify failed: ${JSON.stringify(report)}`);
  const result = {
    meta: { ...machine(), total: written, concurrency: CONCURRENCY, window: WINDOW },
    windows,
    fill_seconds: fillSeconds,
    verify: {
      count: report.count,
      checkpoints: report.checkpoints,
      seconds: verifySeconds,
      records_per_second: report.count / verifySeconds,
    },
    db_mib: dbBytes / 2 ** 20,
  };
  const first = windows[0];
  const last = windows.at(-1);
  const md = [
    '# Audit benchmark: append cost as the log grows, and `audit verify` rate',
    '',
    `${result.meta.date}, Node ${result.meta.node}, ${result.meta.cpus}. The audit writer (group commit) over the SQLite store (WAL, synchronous=FULL), driven directly. Records like the proxy's (request records carry the signature input, signature and the lease's hash: ~0.9 KB of canonical JSON). Batched: ${CONCURRENCY} appends in flight, so each group commit holds up to ${CONCURRENCY} records; cost measured over ${WINDOW.toLocaleString('en')} records at each log size. Lone: one append at a time (one commit and fsync each), 200 samples.`,
    '',
    mdTable(
      ['log size (records)', 'batched us/record', 'lone append p50 ms', 'lone append p99 ms'],
      windows.map((w) => [
        w.log_size.toLocaleString('en'),
        fmt(w.us_per_record_batched, 1),
        fmt(w.lone_p50_ms, 3),
        fmt(w.lone_p99_ms, 3),
      ]),
    ),
    '',
    `Append cost at ${last.log_size.toLocaleString('en')} vs empty log: ${fmt(last.us_per_record_batched / first.us_per_record_batched, 2)}x (batched), ${fmt(last.lone_p50_ms / first.lone_p50_ms, 2)}x (lone p50).`,
    `\`audit verify\` (verifyAuditLog, as \`nexus audit verify\`): ${report.count.toLocaleString('en')} records and ${report.checkpoints} checkpoints in ${fmt(verifySeconds, 1)} s = ${fmt(result.verify.records_per_second)} records/s. Database ${fmt(result.db_mib)} MiB; filling took ${fmt(fillSeconds, 1)} s.`,
    '',
  ].join('\n');
  writeResults('audit', result, md);
  console.log(md);
  return result;
}
