// The audit path alone, A/B: `node bench/audit-path.mjs CHECKOUT [N]` appends N (default
// 20,000) proxy-shaped records, request and outcome, 64 at a time as concurrent requests
// do, through the audit path `nexus up` uses for a SQLite file in CHECKOUT (built with
// `npx tsc -b`): this build's audit thread (`openThreadedAuditWriter`), or before issue 14
// the main-thread writer over the worker-thread appender. Prints the CPU per record of the
// main thread (what the proxy's event loop pays) and of the whole process. Wall time is
// not the figure: this loop waits on each batch, where the proxy overlaps it with other
// requests. With BENCH_AUDIT_PATH_GAP_MS=G, records are instead appended one at a time, G ms
// apart (a lightly loaded node: one record per transaction), and the CPU per record of
// every thread of the process is printed too. Not part of `npm run bench`.
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { join, resolve } from 'node:path';
const dir = resolve(process.argv[2] ?? '.');
const N = Number(process.argv[3] ?? 20000);
const d = (p) => pathToFileURL(join(dir, 'packages/server/dist', p)).href;
const { openSqliteStore } = await import(d('store/sqlite.js'));
const tmp = mkdtempSync(join(tmpdir(), 'nexus-audit-path-'));
const path = join(tmp, 'nexus.db');
const store = openSqliteStore(path);
const sign = async (t) => ({ kid: 'k', jws: `e30.${Buffer.from(t).toString('base64url')}.s` });
let writer;
let appender;
try {
  const { openThreadedAuditWriter } = await import(d('audit/threaded-writer.js'));
  writer = await openThreadedAuditWriter(path, {
    expectFiles: store.files,
    signCheckpoint: sign,
    checkpointIntervalMs: 0,
  });
} catch (e) {
  if (e.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  const { openSqliteAuditAppender } = await import(d('store/sqlite-audit-appender.js'));
  const { createAuditWriter } = await import(d('audit/writer.js'));
  const { auditSinkFromStore } = await import(d('audit/sink.js'));
  appender = await openSqliteAuditAppender(path, { expectFiles: store.files });
  writer = createAuditWriter({
    sink: auditSinkFromStore(store, appender.append),
    clock: Date.now,
    signCheckpoint: (_p, t) => sign(t),
    checkpointIntervalMs: 0,
  });
  await writer.init();
}
const lease = 'eyJ' + 'x'.repeat(700);
const rec = (i, kind) => ({
  v: 1,
  kind,
  time: new Date().toISOString(),
  request_id: 'req' + i,
  agent: 'nexus://example.org/agent/bench-ed',
  lease_id: 'l'.repeat(22),
  service: 'bench',
  method: 'POST',
  path: '/small',
  intent: 'bench',
  decision: 'allow',
  rule_ids: ['r1'],
  policy_hash: 'a'.repeat(64),
  credential: { name: 'c', version: 1 },
  bytes_in: 1024,
  signature: {
    input:
      'wimse=("@method" "@path" "@query" "content-digest" "content-type" "workload-identity-token" "nexus-intent");created=1700000000;expires=1700000060;nonce="abcdefghijklmnopqrstuv";keyid="x";tag="nexus/1.1"',
    value: 'wimse=:' + 'A'.repeat(86) + '==:',
    ...(appender ? { lease } : { lease_hash: 'h'.repeat(43) }),
  },
  ...(kind === 'outcome'
    ? { upstream_status: 200, bytes_out: 1024, duration_ms: 3, redactions: 0 }
    : {}),
});
const mainCpu = () => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').slice(0);
  const r = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(r[11]) + Number(r[12])) / 100;
};
const procCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
// warm-up
for (let i = 0; i < 2000; i += 64)
  await Promise.all(
    Array.from({ length: 64 }, (_x, j) => writer.append(rec(i + j, j % 2 ? 'outcome' : 'request'))),
  );
/** CPU seconds of every thread of this process so far, by thread id. */
const threadCpu = () =>
  Object.fromEntries(
    readdirSync('/proc/self/task').map((tid) => {
      const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const r = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return [tid, (Number(r[11]) + Number(r[12])) / 100];
    }),
  );
const GAP = process.env.BENCH_AUDIT_PATH_GAP_MS;
const th0 = threadCpu();
const m0 = mainCpu(),
  p0 = procCpu(),
  t0 = Date.now();
if (GAP === undefined) {
  for (let i = 0; i < N; i += 64)
    await Promise.all(
      Array.from({ length: 64 }, (_x, j) =>
        writer.append(rec(i + j, j % 2 ? 'outcome' : 'request')),
      ),
    );
} else {
  for (let i = 0; i < N; i++) {
    await writer.append(rec(i, i % 2 ? 'outcome' : 'request'));
    await sleep(Number(GAP));
  }
}
const m1 = mainCpu(),
  p1 = procCpu(),
  t1 = Date.now();
const th1 = threadCpu();
console.log(
  `${dir}: ${N} records${GAP === undefined ? '' : `, one at a time ${GAP} ms apart,`} in ${t1 - t0} ms; main thread ${(((m1 - m0) * 1e6) / N).toFixed(1)} us/record, whole process ${(((p1 - p0) * 1e6) / N).toFixed(1)} us/record`,
);
if (GAP !== undefined) {
  const per = Object.keys(th1)
    .map((tid) => [tid, ((th1[tid] - (th0[tid] ?? 0)) * 1e6) / N])
    .filter(([, us]) => us >= 5)
    .sort((a, b) => b[1] - a[1]);
  console.log(
    `  by thread, us/record: ${per.map(([t, us]) => `${t} ${us.toFixed(0)}`).join(', ')}`,
  );
}
await writer.close();
await appender?.close();
await store.close();
rmSync(tmp, { recursive: true, force: true });
