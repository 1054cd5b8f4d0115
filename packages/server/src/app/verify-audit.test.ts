// Issue 10: audit verification against checkpoints kept outside the database. A real
// SQLite store, the real audit writer and checkpoint file; the Authority's key is a
// fresh Ed25519 key whose public half is stored as a signing key.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CompactSign, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendCheckpointFile,
  checkpointFilePath,
  loadCheckpoints,
  parseCheckpointJws,
} from '../audit/checkpoint-file.js';
import type { AuditCheckpoint } from '../audit/chain.js';
import { auditSinkFromStore } from '../audit/sink.js';
import { createAuditWriter } from '../audit/writer.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import { verifyAuditLog } from './verify-audit.js';

const root = mkdtempSync(join(tmpdir(), 'nexus-verify-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

async function signer(kid: string, key: Key, typ = 'nexus-checkpoint+jws') {
  return async (_p: unknown, text: string) => ({
    kid,
    jws: await new CompactSign(new TextEncoder().encode(text))
      .setProtectedHeader({ alg: 'EdDSA', kid, typ })
      .sign(key),
  });
}

/** A store with `records` audit records and a checkpoint every 5, each also in the file. */
async function auditedStore(records: number): Promise<{ store: SqliteStore; file: string }> {
  const path = join(root, `s-${++n}`, 'nexus.db');
  const store = openSqliteStore(path);
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true });
  await store.insertSigningKey({
    kid: 'k1',
    alg: 'EdDSA',
    publicJwk: { ...(await exportJWK(publicKey)), alg: 'EdDSA', kid: 'k1' },
    privateKeyEnc: 'not-needed-here',
    createdAt: 1,
  });
  const file = checkpointFilePath(path);
  const writer = createAuditWriter({
    sink: auditSinkFromStore(store),
    clock: Date.now,
    signCheckpoint: await signer('k1', privateKey),
    checkpointEvery: 5,
    checkpointIntervalMs: 0,
    onCheckpoint: (cp) => appendCheckpointFile(file, cp),
  });
  await writer.init();
  for (let i = 1; i <= records; i++) {
    await writer.append({ kind: 'request', request_id: `r${i}`, time: new Date(i).toISOString() });
  }
  await writer.close();
  return { store, file };
}

/** What someone with write access does: removes rows (and checkpoints) after `keep`. */
function truncate(path: string, keep: number): void {
  const db = new Database(path);
  db.exec('DROP TRIGGER audit_no_delete');
  db.prepare('DELETE FROM audit_checkpoints WHERE seq > ?').run(keep);
  db.prepare('DELETE FROM audit WHERE seq > ?').run(keep);
  db.close();
}

describe('checkpoint file', () => {
  it('round-trips: JSON lines, bare JWS lines, or one JWS as the argument', async () => {
    const { store, file } = await auditedStore(12);
    const stored = await store.listCheckpoints();
    await store.close();
    // Checkpoints run in the background: the first at 5, the last (on close) at 12.
    expect(stored[0]!.seq).toBe(5);
    expect(stored.at(-1)!.seq).toBe(12);
    expect(stored.length).toBeGreaterThanOrEqual(2);
    const fromFile = await loadCheckpoints(file);
    expect(fromFile).toEqual(stored);
    const bare = join(root, 'bare.txt');
    writeFileSync(bare, stored.map((c) => c.jws).join('\n') + '\n');
    expect(await loadCheckpoints(bare)).toEqual(stored);
    expect(await loadCheckpoints(stored[1]!.jws)).toEqual([stored[1]]);
    // Only the JWS counts: the human-readable members cannot lie.
    const lying = join(root, 'lying.jsonl');
    writeFileSync(lying, JSON.stringify({ ...stored[0], seq: 999, hash: 'f'.repeat(64) }) + '\n');
    expect(await loadCheckpoints(lying)).toEqual([stored[0]]);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(stored.length);
  });

  it.each([
    ['a line that is not a checkpoint', 'hello\n'],
    ['a JSON line without a JWS', '{"seq":1}\n'],
    ['an empty file', '\n'],
  ])('refuses %s (validation_failed)', async (_name, text) => {
    const f = join(root, `bad-${++n}.jsonl`);
    writeFileSync(f, text);
    await expect(loadCheckpoints(f)).rejects.toMatchObject({ code: 'validation_failed' });
  });

  it('refuses a JWS that is not a checkpoint (e.g. a lease) and a missing file', async () => {
    const { privateKey } = await generateKeyPair('EdDSA');
    const lease = await (
      await signer('k1', privateKey, 'wit+jwt')
    )({}, '{"v":1,"seq":1,"hash":"h","time":1}');
    expect(() => parseCheckpointJws(lease.jws)).toThrow(
      expect.objectContaining({ code: 'validation_failed' }),
    );
    await expect(loadCheckpoints(join(root, 'nope.jsonl'))).rejects.toMatchObject({
      code: 'validation_failed',
    });
  });
});

describe('verifyAuditLog --against (issue 10)', () => {
  let store: SqliteStore;
  let shipped: AuditCheckpoint[];

  beforeAll(async () => {
    const made = await auditedStore(12);
    store = made.store;
    shipped = await loadCheckpoints(made.file);
  });
  afterAll(() => store.close());

  it('an intact chain holds every external checkpoint', async () => {
    expect(await verifyAuditLog(store, { against: shipped })).toEqual({
      ok: true,
      count: 12,
      checkpoints: shipped.length,
      against: { seq: 12, hash: shipped.at(-1)!.hash, time: shipped.at(-1)!.time },
    });
  });

  it('a truncated tail verifies on its own, and is found truncated against the shipped checkpoints', async () => {
    const { store: s, file } = await auditedStore(12);
    const external = await loadCheckpoints(file);
    truncate(s.path, 7);
    expect(await verifyAuditLog(s)).toMatchObject({ ok: true, count: 7 });
    expect(await verifyAuditLog(s, { against: external })).toMatchObject({
      ok: false,
      seq: 8,
      reason: 'truncated',
    });
    // Against only the newest shipped checkpoint, too.
    expect(await verifyAuditLog(s, { against: [external.at(-1)!] })).toMatchObject({
      ok: false,
      reason: 'truncated',
    });
    // A checkpoint at or before the cut still verifies: the window after the newest
    // shipped checkpoint is what is not covered.
    expect(await verifyAuditLog(s, { against: [external[0]!] })).toMatchObject({ ok: true });
    await s.close();
  });

  it('a rewritten tail that grew past the checkpoint again is a checkpoint_mismatch', async () => {
    const { store: s, file } = await auditedStore(12);
    const external = await loadCheckpoints(file);
    truncate(s.path, 7);
    // The node (or the intruder) appends new records after the cut.
    const writer = createAuditWriter({
      sink: auditSinkFromStore(s),
      clock: Date.now,
      signCheckpoint: async () => ({ kid: 'none', jws: 'x.y.z' }),
      checkpointIntervalMs: 0,
      checkpointEvery: 1000,
    });
    await writer.init();
    for (let i = 0; i < 8; i++) {
      await writer.append({
        kind: 'request',
        request_id: `x${i}`,
        time: new Date(i).toISOString(),
      });
    }
    expect(await verifyAuditLog(s)).toMatchObject({ ok: true, count: 15 });
    expect(await verifyAuditLog(s, { against: external })).toMatchObject({
      ok: false,
      seq: external.find((c) => c.seq > 7)!.seq,
      reason: 'checkpoint_mismatch',
    });
    await s.close();
  });

  it('a checkpoint the Authority never signed is checkpoint_invalid', async () => {
    const { privateKey } = await generateKeyPair('EdDSA');
    const forged = await (
      await signer('k1', privateKey)
    )({}, JSON.stringify({ hash: shipped.at(-1)!.hash, seq: 12, time: 1, v: 1 }));
    expect(
      await verifyAuditLog(store, { against: [parseCheckpointJws(forged.jws)] }),
    ).toMatchObject({ ok: false, seq: 12, reason: 'checkpoint_invalid' });
  });
});
