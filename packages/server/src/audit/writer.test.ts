// Tests of the hash chain, its verifier and the group-commit writer: ordering under
// concurrency, fail-closed on sink failure, recovery, tamper detection, checkpoints.
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildRow,
  GENESIS_HASH,
  hashRecord,
  verifyChain,
  verifySink,
  createChainVerifier,
} from './chain.js';
import type { AuditCheckpoint, AuditRow, CheckpointPayload } from './chain.js';
import { auditTime } from './record.js';
import type { AuditRecord } from './record.js';
import { createMemoryAuditSink } from './sink.js';
import type { AuditSink } from './sink.js';
import { createAuditWriter } from './writer.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const KID = 'audit-key-1';

async function signCheckpoint(
  _p: CheckpointPayload,
  text: string,
): Promise<{ kid: string; jws: string }> {
  const header = Buffer.from(
    JSON.stringify({ alg: 'EdDSA', kid: KID, typ: 'nexus-checkpoint+jwt' }),
  ).toString('base64url');
  const payload = Buffer.from(text).toString('base64url');
  const sig = sign(null, Buffer.from(`${header}.${payload}`), privateKey).toString('base64url');
  return { kid: KID, jws: `${header}.${payload}.${sig}` };
}

function verifyCheckpoint(cp: AuditCheckpoint): boolean {
  const [h, p, s] = cp.jws.split('.');
  if (h === undefined || p === undefined || s === undefined) return false;
  return verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, 'base64url'));
}

let t = Date.UTC(2026, 0, 1);
const clock = (): number => t;

function record(i: number): AuditRecord {
  return {
    v: 1,
    kind: 'request',
    time: auditTime(Date.UTC(2026, 0, 1) + i),
    request_id: `req-${i}`,
    agent: 'nexus://example.org/agent/bot',
    lease_id: 'lease-1',
    service: 'github',
    method: 'GET',
    path: `/repos/a/b/issues/${i}`,
    intent: 'triage',
    decision: 'allow',
    rule_ids: ['r1'],
    policy_hash: 'p'.repeat(64),
  };
}

function chain(n: number): AuditRow[] {
  const rows: AuditRow[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const row = buildRow(record(i), i, prev);
    rows.push(row);
    prev = row.hash;
  }
  return rows;
}

const opts = { verifyCheckpoint };

describe('hash chain', () => {
  it('hashes sha256(JCS({...record, seq, prev_hash}))', async () => {
    const rows = chain(3);
    expect(rows[0]!.prevHash).toBe(GENESIS_HASH);
    expect(rows[1]!.prevHash).toBe(rows[0]!.hash);
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]!.time).toBe(Date.UTC(2026, 0, 1) + 1);
    expect(await verifyChain(rows, [], opts)).toEqual({
      ok: true,
      count: 3,
      last: { seq: 3, hash: rows[2]!.hash },
    });
    expect(await verifyChain([], [], opts)).toMatchObject({ ok: true, count: 0 });
  });

  it('rejects records carrying seq or prev_hash', () => {
    expect(() => hashRecord({ seq: 1 }, 1, GENESIS_HASH)).toThrow(
      expect.objectContaining({ code: 'internal_error' }),
    );
  });

  const tampers: [string, (rows: AuditRow[]) => AuditRow[], number, string][] = [
    [
      'edit record text',
      (r) => {
        r[4] = { ...r[4]!, record: r[4]!.record.replace('triage', 'innocent') };
        return r;
      },
      5,
      'edited',
    ],
    [
      'edit record and recompute its hash',
      (r) => {
        const rec = JSON.parse(r[4]!.record) as AuditRecord;
        rec.intent = 'innocent';
        r[4] = buildRow(rec, 5, r[4]!.prevHash);
        return r;
      },
      5,
      'edited',
    ],
    ['edit an index column', (r) => ((r[4] = { ...r[4]!, kind: 'outcome' }), r), 5, 'edited'],
    ['edit the hash', (r) => ((r[4] = { ...r[4]!, hash: 'f'.repeat(64) }), r), 5, 'edited'],
    ['delete a row', (r) => (r.splice(4, 1), r), 5, 'deleted'],
    ['delete the first row', (r) => (r.splice(0, 1), r), 1, 'deleted'],
    [
      'delete a row and renumber',
      (r) => {
        r.splice(4, 1);
        return r.map((x, i) => ({ ...x, seq: i + 1 }));
      },
      5,
      'deleted',
    ],
    [
      'insert a row and renumber',
      (r) => {
        const forged = buildRow({ ...record(99) }, 5, r[3]!.hash);
        r.splice(4, 0, forged);
        return r.map((x, i) => ({ ...x, seq: i + 1 }));
      },
      5,
      'inserted',
    ],
    ['insert a duplicate seq', (r) => (r.splice(5, 0, { ...r[4]! }), r), 6, 'inserted'],
    [
      'swap two rows by seq',
      (r) => {
        const a = r[4]!;
        const b = r[5]!;
        r[4] = { ...b, seq: 5 };
        r[5] = { ...a, seq: 6 };
        return r;
      },
      5,
      'reordered',
    ],
    [
      'out-of-order export',
      (r) => {
        const a = r[4]!;
        r[4] = r[5]!;
        r[5] = a;
        return r;
      },
      5,
      'reordered',
    ],
  ];
  it.each(tampers)('detects: %s', async (_name, tamper, seq, reason) => {
    const rows = tamper(chain(10));
    const r = await verifyChain(rows, [], opts);
    expect(r).toEqual({ ok: false, seq, reason });
  });

  it('verifies in pages and detects a tamper across a page boundary', async () => {
    const rows = chain(25);
    const v = createChainVerifier([], opts);
    for (let i = 0; i < 25; i += 7) expect(await v.page(rows.slice(i, i + 7))).toBeUndefined();
    expect(await v.finish()).toMatchObject({ ok: true, count: 25 });
    const bad = chain(25);
    bad[14] = { ...bad[14]!, record: bad[14]!.record.replace('bot', 'b0t') };
    const v2 = createChainVerifier([], opts);
    let res;
    for (let i = 0; i < 25 && res === undefined; i += 7) res = await v2.page(bad.slice(i, i + 7));
    expect(res).toEqual({ ok: false, seq: 15, reason: 'edited' });
  });

  it('catches a full rewrite and truncation with checkpoints', async () => {
    const rows = chain(10);
    const payload: CheckpointPayload = { v: 1, seq: 8, hash: rows[7]!.hash, time: 1 };
    const { kid, jws } = await signCheckpoint(payload, JSON.stringify(payload));
    const cp: AuditCheckpoint = { seq: 8, hash: rows[7]!.hash, time: 1, kid, jws };
    expect(await verifyChain(rows, [cp], opts)).toMatchObject({ ok: true, count: 10 });
    // Rewrite: change row 3 and recompute every later hash: links hold, the checkpoint does not.
    const rewritten: AuditRow[] = [];
    let prev = GENESIS_HASH;
    for (let i = 1; i <= 10; i++) {
      const rec = i === 3 ? { ...record(i), intent: 'rewritten' } : record(i);
      const row = buildRow(rec, i, prev);
      rewritten.push(row);
      prev = row.hash;
    }
    expect(await verifyChain(rewritten, [cp], opts)).toEqual({
      ok: false,
      seq: 8,
      reason: 'checkpoint_mismatch',
    });
    // Truncation below a checkpoint.
    expect(await verifyChain(rows.slice(0, 6), [cp], opts)).toEqual({
      ok: false,
      seq: 7,
      reason: 'truncated',
    });
    // A forged signature, or columns that disagree with the signed payload.
    expect(await verifyChain(rows, [{ ...cp, jws: cp.jws.slice(0, -4) + 'AAAA' }], opts)).toEqual({
      ok: false,
      seq: 8,
      reason: 'checkpoint_invalid',
    });
    expect(await verifyChain(rows, [{ ...cp, hash: rows[8]!.hash }], opts)).toEqual({
      ok: false,
      seq: 8,
      reason: 'checkpoint_mismatch',
    });
  });
});

/** A sink whose next `append` calls fail while `failing` is set. */
function flakySink(): AuditSink & {
  failing: boolean;
  batches: number[];
  rows: AuditRow[];
  checkpoints: AuditCheckpoint[];
} {
  const inner = createMemoryAuditSink();
  const s = {
    ...inner,
    rows: inner.rows,
    checkpoints: inner.checkpoints,
    failing: false,
    batches: [] as number[],
    async append(rows: readonly AuditRow[]) {
      s.batches.push(rows.length);
      if (s.failing) throw new Error('disk full');
      return inner.append(rows);
    },
  };
  return s;
}

describe('createAuditWriter', () => {
  it('1000 concurrent appends get contiguous seqs in few batches and a verifying chain', async () => {
    const sink = flakySink();
    const w = createAuditWriter({
      sink,
      clock,
      signCheckpoint,
      checkpointEvery: 300,
      checkpointIntervalMs: 0,
      maxBatch: 250,
    });
    await w.init();
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_v, i) => w.append(record(i + 1))),
    );
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 1000 }, (_v, i) => i + 1));
    expect(sink.batches).toEqual([250, 250, 250, 250]);
    await w.close();
    expect(sink.checkpoints.map((c) => c.seq)).toContain(1000);
    expect(sink.checkpoints.length).toBeGreaterThanOrEqual(2);
    expect(await verifySink(sink, { verifyCheckpoint, pageSize: 128 })).toMatchObject({
      ok: true,
      count: 1000,
    });
  });

  it('appends made while a write is in flight join the next batch, in order', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    const first = w.append(record(1));
    await new Promise((r) => setImmediate(r));
    const more = [w.append(record(2)), w.append(record(3)), w.append(record(4))];
    expect((await first).seq).toBe(1);
    expect((await Promise.all(more)).map((r) => r.seq)).toEqual([2, 3, 4]);
    expect(sink.batches).toEqual([1, 3]);
    expect(w.head).toEqual({ seq: 4, hash: sink.rows[3]!.hash });
  });

  it('a failed write rejects every waiting append with audit_unavailable, then recovers without gaps', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    await w.append(record(1));
    sink.failing = true;
    const pending = Array.from({ length: 5 }, (_v, i) => w.append(record(i + 2)));
    const settled = await Promise.allSettled(pending);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'audit_unavailable' });
    }
    expect(w.head).toBeUndefined();
    sink.failing = false;
    expect(await w.append(record(7))).toMatchObject({ seq: 2 });
    expect(await verifySink(sink, { verifyCheckpoint })).toMatchObject({ ok: true, count: 2 });
  });

  it('re-reads the head after another writer moved the chain (no fork)', async () => {
    const sink = flakySink();
    const a = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    const b = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await a.init();
    await b.init();
    await a.append(record(1));
    // b's head is stale: the sink refuses the unlinked batch, b fails closed and re-reads.
    await expect(b.append(record(2))).rejects.toMatchObject({ code: 'audit_unavailable' });
    expect(await b.append(record(3))).toMatchObject({ seq: 2 });
    expect(await verifySink(sink, { verifyCheckpoint })).toMatchObject({ ok: true, count: 2 });
  });

  it('continues an existing chain after init', async () => {
    const sink = flakySink();
    const a = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await a.init();
    await Promise.all([a.append(record(1)), a.append(record(2))]);
    await a.close();
    const b = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await b.init();
    expect(await b.append(record(3))).toMatchObject({ seq: 3 });
    await b.close();
    expect(sink.checkpoints.map((c) => c.seq)).toEqual([2, 3]);
    expect(await verifySink(sink, { verifyCheckpoint })).toMatchObject({ ok: true, count: 3 });
  });

  it('rejects an unhashable record alone with internal_error', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    const good = w.append(record(1));
    await expect(w.append({ ...record(2), duration_ms: NaN })).rejects.toMatchObject({
      code: 'internal_error',
    });
    expect(await good).toMatchObject({ seq: 1 });
  });

  it('refuses a replay claim a sink cannot make in its transaction (fail closed); the others are written', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    const good = w.append(record(1));
    await expect(
      w.append(record(2), { key: 'k', forgetAt: t + 60_000, exclusive: true }),
    ).rejects.toMatchObject({ code: 'internal_error' });
    expect(await good).toMatchObject({ seq: 1 });
  });

  it('refuses appends after close with audit_unavailable', async () => {
    const w = createAuditWriter({
      sink: flakySink(),
      clock,
      signCheckpoint,
      checkpointIntervalMs: 0,
    });
    await w.init();
    await w.close();
    await w.close();
    await expect(w.append(record(1))).rejects.toMatchObject({ code: 'audit_unavailable' });
  });

  it('writes checkpoints on the timer, signed over {v, seq, hash, time}', async () => {
    const sink = flakySink();
    t = Date.UTC(2026, 0, 2);
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 20 });
    await w.init();
    await w.append(record(1));
    await new Promise((r) => setTimeout(r, 80));
    expect(sink.checkpoints).toHaveLength(1);
    const cp = sink.checkpoints[0]!;
    expect(cp).toMatchObject({ seq: 1, hash: sink.rows[0]!.hash, time: t, kid: KID });
    expect(JSON.parse(Buffer.from(cp.jws.split('.')[1]!, 'base64url').toString())).toEqual({
      v: 1,
      seq: 1,
      hash: sink.rows[0]!.hash,
      time: t,
    });
    // Nothing new: no further checkpoint.
    expect(await w.checkpoint()).toBeUndefined();
    await w.close();
    expect(sink.checkpoints).toHaveLength(1);
  });

  it('hands every stored checkpoint to onCheckpoint; a failing one goes to onError, the checkpoint stays (issue 10)', async () => {
    const sink = flakySink();
    const seen: number[] = [];
    const errors: unknown[] = [];
    let fail = false;
    const w = createAuditWriter({
      sink,
      clock,
      signCheckpoint,
      checkpointIntervalMs: 0,
      onCheckpoint: (cp) => {
        if (fail) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
        seen.push(cp.seq);
      },
      onError: (e) => errors.push(e),
    });
    await w.init();
    await w.append(record(1));
    expect(await w.checkpoint()).toMatchObject({ seq: 1 });
    fail = true;
    await w.append(record(2));
    expect(await w.checkpoint()).toMatchObject({ seq: 2 });
    expect(seen).toEqual([1]);
    expect(errors).toMatchObject([{ code: 'ENOSPC' }]);
    expect(sink.checkpoints.map((c) => c.seq)).toEqual([1, 2]);
  });

  it('refuses to chain onto a sink that lost a record it made durable (issue 10)', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    await w.append(record(1));
    await w.append(record(2));
    // The store is rolled back under the writer (an old copy restored, the tail cut), and
    // the next write fails, so the writer re-reads the head.
    sink.rows.pop();
    sink.failing = true;
    await expect(w.append(record(3))).rejects.toMatchObject({ code: 'audit_unavailable' });
    sink.failing = false;
    const refused = await w.append(record(4)).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: 'audit_unavailable',
      cause: { code: 'store_unavailable' },
    });
    // And it stays refused: nothing is chained onto the shorter log.
    await expect(w.append(record(5))).rejects.toMatchObject({ code: 'audit_unavailable' });
    expect(sink.rows).toHaveLength(1);
  });

  it('a record made durable that is still there, unchanged, lets the writer carry on after a failure', async () => {
    const sink = flakySink();
    const w = createAuditWriter({ sink, clock, signCheckpoint, checkpointIntervalMs: 0 });
    await w.init();
    await w.append(record(1));
    // A batch that reached the sink but whose answer was lost: the head moved past it.
    await sink.append([buildRow(record(2), 2, sink.rows[0]!.hash)]);
    sink.failing = true;
    await expect(w.append(record(3))).rejects.toMatchObject({ code: 'audit_unavailable' });
    sink.failing = false;
    expect(await w.append(record(4))).toMatchObject({ seq: 3 });
  });
});
