// The audit writer and verifier over the real SQLite store, through auditSinkFromStore.
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../store/sqlite.js';
import type { SqliteStore } from '../store/sqlite.js';
import { verifySink } from './chain.js';
import type { AuditCheckpoint, CheckpointPayload } from './chain.js';
import { auditTime } from './record.js';
import type { AuditRecord } from './record.js';
import { auditSinkFromStore } from './sink.js';
import { createAuditWriter } from './writer.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');

async function signCheckpoint(
  _p: CheckpointPayload,
  text: string,
): Promise<{ kid: string; jws: string }> {
  const h = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'k1' })).toString('base64url');
  const p = Buffer.from(text).toString('base64url');
  return {
    kid: 'k1',
    jws: `${h}.${p}.${sign(null, Buffer.from(`${h}.${p}`), privateKey).toString('base64url')}`,
  };
}

function verifyCheckpoint(cp: AuditCheckpoint): boolean {
  const [h, p, s] = cp.jws.split('.');
  return verify(null, Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s ?? '', 'base64url'));
}

function record(i: number): AuditRecord {
  return {
    v: 1,
    kind: i % 2 === 0 ? 'outcome' : 'request',
    time: auditTime(Date.UTC(2026, 0, 1) + i),
    request_id: `req-${i}`,
    agent: 'nexus://example.org/agent/bot',
    lease_id: 'lease-1',
    service: 'github',
    method: 'GET',
    path: '/user',
    intent: 'read',
    decision: 'allow',
    rule_ids: [],
    policy_hash: 'p'.repeat(64),
    redactions: 0,
  };
}

let store: SqliteStore | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
});

describe('audit over the SQLite store', () => {
  it('group-commits concurrent appends, checkpoints and verifies', async () => {
    store = openSqliteStore(':memory:');
    const sink = auditSinkFromStore(store);
    const w = createAuditWriter({
      sink,
      clock: Date.now,
      signCheckpoint,
      checkpointEvery: 100,
      checkpointIntervalMs: 0,
    });
    await w.init();
    const res = await Promise.all(Array.from({ length: 500 }, (_v, i) => w.append(record(i + 1))));
    expect(res.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_v, i) => i + 1));
    await w.close();
    expect((await sink.lastCheckpoint())?.seq).toBe(500);
    expect(await verifySink(sink, { verifyCheckpoint, pageSize: 64 })).toMatchObject({
      ok: true,
      count: 500,
    });
  });

  it('a second writer with a stale head fails closed, then continues the chain', async () => {
    store = openSqliteStore(':memory:');
    const sink = auditSinkFromStore(store);
    const a = createAuditWriter({ sink, clock: Date.now, signCheckpoint, checkpointIntervalMs: 0 });
    const b = createAuditWriter({ sink, clock: Date.now, signCheckpoint, checkpointIntervalMs: 0 });
    await a.init();
    await b.init();
    await a.append(record(1));
    await expect(b.append(record(2))).rejects.toMatchObject({ code: 'audit_unavailable' });
    expect(await b.append(record(3))).toMatchObject({ seq: 2 });
    expect(await verifySink(sink, { verifyCheckpoint })).toMatchObject({ ok: true, count: 2 });
  });
});
