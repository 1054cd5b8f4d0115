// One group commit's worth of linked audit rows, shaped like the proxy's request records,
// for the benches that drive `appendAuditLinked` directly (bench/workers.mjs,
// bench/replay-claim-ab.mjs): `count` rows after `last`, leaving out the ones `refused`
// marks (a replay claim that met a live record).
import { randomBytes } from 'node:crypto';

export function auditBatch(last, refused, { count, record, agent, service = 'bench' }) {
  let seq = last?.seq ?? 0;
  let prev = last?.hash ?? '0'.repeat(64);
  const rows = [];
  for (let i = 0; i < count; i++) {
    if (refused[i] === true) continue;
    const hash = randomBytes(32).toString('hex');
    rows.push({
      seq: ++seq,
      time: Date.now(),
      kind: 'request',
      requestId: `r${seq}`,
      record,
      prevHash: prev,
      hash,
      agent,
      service,
      decision: 'allow',
      indexed: true,
    });
    prev = hash;
  }
  return rows;
}
