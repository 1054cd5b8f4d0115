// A/B of the workers' shared replay record per request (issue 14 step 4), in one process,
// alternating 7 rounds: `node bench/replay-claim-ab.mjs OTHER_CHECKOUT` where OTHER_CHECKOUT
// is a built checkout that still has `proxy/replay-sqlite.ts` (before commit cbaae27).
// A: its separate unique insert into replay_nonces per request (on the event loop) plus
// this checkout's audit group commit of 27 records; B: the group commit of 27 with one
// replay claim per record (the audit thread). Prints the CPU of this process per request.
// Not part of `npm run bench`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { auditBatch } from './lib/audit-batch.mjs';
const other = process.argv[2];
if (!other) {
  console.error('usage: node bench/replay-claim-ab.mjs OTHER_CHECKOUT (built with npx tsc -b)');
  process.exit(2);
}
const here = resolve(import.meta.dirname, '../packages/server/dist');
const base = resolve(other, 'packages/server/dist');
const { openSqliteStore } = await import(`${here}/store/sqlite.js`);
const { createSqliteReplayGuard } = await import(`${base}/proxy/replay-sqlite.js`);
const { replayKey } = await import(`${here}/proxy/replay-shared.js`);
const dir = mkdtempSync(join(tmpdir(), 'claim-ab-'));
const path = join(dir, 'nexus.db');
await openSqliteStore(path).close();
const store = openSqliteStore(path, { create: false, migrate: false });
const guard = createSqliteReplayGuard(path, {
  skewSeconds: 5,
  clock: Date.now,
  sweepIntervalMs: 0,
});
const record = JSON.stringify({ v: 1, kind: 'request', pad: 'x'.repeat(600) });
const BATCH = 27,
  BATCHES = 150;
const lease = randomBytes(16).toString('base64url');
const expires = Math.floor(Date.now() / 1000) + 60;
async function commit(claims) {
  await store.appendAuditLinked(
    (last, _hashAt, refused) =>
      auditBatch(last, refused, { count: BATCH, record, agent: 'a', service: 's' }),
    claims,
  );
}
async function roundA() {
  const c0 = process.cpuUsage();
  for (let b = 0; b < BATCHES; b++) {
    for (let i = 0; i < BATCH; i++)
      await guard.checkAndRecord(lease, randomBytes(16).toString('base64url'), expires);
    await commit(undefined);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (BATCH * BATCHES);
}
async function roundB() {
  const c0 = process.cpuUsage();
  const forgetAt = (expires + 6) * 1000;
  for (let b = 0; b < BATCHES; b++) {
    const claims = {
      claims: Array.from({ length: BATCH }, () => ({
        key: replayKey(lease, randomBytes(16).toString('base64url')),
        forgetAt,
        exclusive: true,
      })),
      now: Date.now(),
    };
    await commit(claims);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (BATCH * BATCHES);
}
const A = [],
  B = [];
await roundA();
await roundB();
for (let r = 0; r < 7; r++) {
  if (r % 2 === 0) {
    A.push(await roundA());
    B.push(await roundB());
  } else {
    B.push(await roundB());
    A.push(await roundA());
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  'A separate insert + commit, us CPU/request:',
  A.map((x) => x.toFixed(1)).join(' '),
  'median',
  med(A).toFixed(1),
);
console.log(
  'B claim in commit, us CPU/request:',
  B.map((x) => x.toFixed(1)).join(' '),
  'median',
  med(B).toFixed(1),
);
await guard.close();
await store.close();
