// The audit hash chain: record hashing, rows, signed-checkpoint payloads and verification.
//
// hash(n) = sha256hex(JCS({ ...record, seq: n, prev_hash: hash(n-1) })), hash(0) = 64 zeros.
// Security invariants:
// - Any edit, deletion, insertion or reordering of rows MUST make verification fail.
//   (Rewriting every hash after a change is possible without a key; signed checkpoints
//   anchor the chain, so such a rewrite fails at the next checkpoint.)
// - The `reason` of a failure is a best-effort diagnosis; `ok: false` is the guarantee.
import { createHash } from 'node:crypto';
import { auditAgentKey } from '../store/store.js';
import { canonicalize, canonicalMembers } from './canonical-json.js';
import { NexusError } from '@nexus-proxy/protocol';

/** `prev_hash` of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** A stored audit row (the shape of the store's `AuditRow`). */
export interface AuditRow {
  /** 1, 2, 3, ... contiguous. */
  seq: number;
  /** Milliseconds since the epoch (the record's `time`). */
  time: number;
  /** The record's `kind`. */
  kind: string;
  /** The record's `request_id`. */
  requestId: string;
  /** The record as canonical JSON text, without `seq` and `prev_hash`. */
  record: string;
  /** Hash of the row before (GENESIS_HASH for seq 1). */
  prevHash: string;
  /** This row's hash. */
  hash: string;
  /**
   * The index columns, taken from the record object when the row is built (so the store
   * does not re-parse `record` to find them); a store row read back carries them as
   * `agent`, `service`, `decision` instead.
   */
  index?: AuditIndex;
}

/** The index columns of a row (what `audit query` filters on); the agent as its name. */
export interface AuditIndex {
  agent?: string;
  service?: string;
  decision?: string;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** A signed checkpoint over the chain up to `seq` (the store's `CheckpointRow`). */
export interface AuditCheckpoint {
  seq: number;
  /** The hash of the row at `seq`. */
  hash: string;
  /** Milliseconds since the epoch. */
  time: number;
  /** Key id of the signing key. */
  kid: string;
  /** JWS compact serialisation whose payload is the JSON of {@link CheckpointPayload}. */
  jws: string;
}

/** What a checkpoint signs. */
export interface CheckpointPayload {
  v: 1;
  seq: number;
  hash: string;
  time: number;
}

/** The minimum a record must carry to go into the chain. */
export interface ChainRecord {
  kind: string;
  request_id: string;
  /** ISO 8601 time. */
  time: string;
  [field: string]: unknown;
}

/**
 * The hash of `record` at position `seq` after `prevHash`.
 *
 * @throws NexusError `internal_error` if the record cannot be canonicalised or already
 *   has a `seq` or `prev_hash` member.
 */
export function hashRecord(
  record: Readonly<Record<string, unknown>>,
  seq: number,
  prevHash: string,
): string {
  if ('seq' in record || 'prev_hash' in record) {
    throw new NexusError('internal_error', 'audit record must not carry seq or prev_hash');
  }
  return createHash('sha256')
    .update(canonicalize({ ...record, seq, prev_hash: prevHash }), 'utf8')
    .digest('hex');
}

/** A record canonicalised once (see {@link prepareRecord}), ready to chain at any position. */
export interface PreparedRecord {
  readonly record: ChainRecord;
  /** Top-level members in canonical order, each as `"name":value` text. */
  readonly members: readonly (readonly [string, string])[];
}

/**
 * Canonicalises a record once for {@link buildPreparedRow}; the audit writer does it when a
 * record is appended, so a record that cannot be canonicalised fails alone.
 *
 * @throws NexusError `internal_error` as {@link hashRecord}.
 */
export function prepareRecord(record: ChainRecord): PreparedRecord {
  if ('seq' in record || 'prev_hash' in record) {
    throw new NexusError('internal_error', 'audit record must not carry seq or prev_hash');
  }
  return { record, members: canonicalMembers(record) };
}

const byName = (a: readonly [string, string], b: readonly [string, string]): number =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;

/**
 * {@link buildRow} for a prepared record. MUST give the very text and hash of
 * {@link buildRow} / {@link hashRecord}: the hash input is the record's canonical members
 * with `prev_hash` and `seq` merged in at their sorted places, which is the canonical JSON
 * of `{ ...record, seq, prev_hash }`.
 */
export function buildPreparedRow(
  prepared: PreparedRecord,
  seq: number,
  prevHash: string,
  fallbackTime?: number,
): AuditRow {
  const { record, members } = prepared;
  const text = '{' + members.map((m) => m[1]).join(',') + '}';
  const chained = [
    ...members,
    ['prev_hash', '"prev_hash":' + canonicalize(prevHash)] as const,
    ['seq', '"seq":' + canonicalize(seq)] as const,
  ].sort(byName);
  const hashInput = '{' + chained.map((m) => m[1]).join(',') + '}';
  const parsedTime = Date.parse(record.time);
  const agent = str(record['agent']);
  return {
    seq,
    time: Number.isFinite(parsedTime) ? parsedTime : (fallbackTime ?? 0),
    kind: record.kind,
    requestId: record.request_id,
    record: text,
    prevHash,
    hash: createHash('sha256').update(hashInput, 'utf8').digest('hex'),
    index: {
      agent: agent === undefined ? undefined : auditAgentKey(agent),
      service: str(record['service']),
      decision: str(record['decision']),
    },
  };
}

/**
 * Builds the row for `record` at `seq` after `prevHash`: canonical text, hash and the
 * index columns (`time` from the record's ISO time, else `fallbackTime`).
 */
export function buildRow(
  record: ChainRecord,
  seq: number,
  prevHash: string,
  fallbackTime?: number,
): AuditRow {
  return buildPreparedRow(prepareRecord(record), seq, prevHash, fallbackTime);
}

/** The canonical text a checkpoint signer signs (the JWS payload). */
export function checkpointPayloadText(payload: CheckpointPayload): string {
  return canonicalize({ ...payload });
}

/** Decodes the payload of a JWS compact checkpoint; undefined when malformed. Does not verify. */
export function decodeCheckpointPayload(jws: string): CheckpointPayload | undefined {
  const parts = jws.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const p = JSON.parse(
      Buffer.from(parts[1]!, 'base64url').toString('utf8'),
    ) as Partial<CheckpointPayload>;
    if (
      p.v !== 1 ||
      typeof p.seq !== 'number' ||
      typeof p.hash !== 'string' ||
      typeof p.time !== 'number'
    ) {
      return undefined;
    }
    return { v: 1, seq: p.seq, hash: p.hash, time: p.time };
  } catch {
    return undefined;
  }
}

/** Why verification failed. */
export type ChainFailureReason =
  /** A row's content or hash was changed. */
  | 'edited'
  /** A row is missing (a gap, or rows shifted down). */
  | 'deleted'
  /**
   * The chain ends before a signed checkpoint: the newest rows were removed (with the
   * checkpoint kept in the database, or one kept outside it: `verify --against`).
   */
  | 'truncated'
  /** A row was added (duplicate seq, or rows shifted up). */
  | 'inserted'
  /** Rows are out of order. */
  | 'reordered'
  /** A checkpoint disagrees with the chain or with its own signed payload. */
  | 'checkpoint_mismatch'
  /** A checkpoint signature does not verify. */
  | 'checkpoint_invalid';

/** Outcome of a verification. */
export type ChainVerifyResult =
  | { ok: true; count: number; last: { seq: number; hash: string } }
  | { ok: false; seq: number; reason: ChainFailureReason };

/** Options of {@link verifyChain} and {@link createChainVerifier}. */
export interface ChainVerifyOptions {
  /** Verifies a checkpoint's JWS signature (e.g. with the Authority JWKS). */
  verifyCheckpoint: (checkpoint: AuditCheckpoint) => boolean | Promise<boolean>;
  /**
   * Start after this verified point instead of genesis (incremental verification);
   * checkpoints at or before `from.seq` are skipped.
   */
  from?: { seq: number; hash: string };
}

/** An incremental verifier: feed rows in pages, ascending, then call `finish`. */
export interface ChainVerifier {
  /** Verifies the next page; resolves a failure, or undefined while all is well. */
  page(rows: readonly AuditRow[]): Promise<ChainVerifyResult | undefined>;
  /** Checks the remaining checkpoints (truncation) and returns the final result. */
  finish(): Promise<ChainVerifyResult>;
}

const RECENT = 1024;

interface Parsed {
  record: Record<string, unknown>;
}

/** Parses a row's record text; undefined if it is not canonical or inconsistent with its columns. */
function parseRow(row: AuditRow): Parsed | undefined {
  let record: unknown;
  try {
    record = JSON.parse(row.record);
  } catch {
    return undefined;
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return undefined;
  const r = record as Record<string, unknown>;
  try {
    if (canonicalize(r) !== row.record) return undefined;
  } catch {
    return undefined;
  }
  if ('seq' in r || 'prev_hash' in r) return undefined;
  if (r.kind !== row.kind || r.request_id !== row.requestId) return undefined;
  if (typeof r.time === 'string' && Date.parse(r.time) !== row.time) return undefined;
  // The store's index columns (what `audit query` filters on) must say what the hashed
  // record says: editing them would hide a row from a filtered query.
  const indexed = row as AuditRow & { agent?: string; service?: string; decision?: string };
  for (const key of ['agent', 'service', 'decision'] as const) {
    if (!(key in indexed)) continue;
    const value = r[key];
    const expected =
      typeof value !== 'string' ? undefined : key === 'agent' ? auditAgentKey(value) : value;
    if (indexed[key] !== expected) return undefined;
  }
  return { record: r };
}

function safeHash(p: Parsed, seq: number, prevHash: string): string | undefined {
  try {
    return hashRecord(p.record, seq, prevHash);
  } catch {
    return undefined;
  }
}

/**
 * Creates an incremental chain verifier (rows in pages, ascending seq). Memory is
 * O(checkpoints + page), not O(chain).
 */
export function createChainVerifier(
  checkpoints: readonly AuditCheckpoint[],
  options: ChainVerifyOptions,
): ChainVerifier {
  const startSeq = options.from?.seq ?? 0;
  let prevSeq = startSeq;
  let prevHash = options.from?.hash ?? GENESIS_HASH;
  let count = 0;
  let failed: ChainVerifyResult | undefined;
  const recent = new Map<string, number>([[prevHash, prevSeq]]);
  const pending = [...checkpoints].filter((c) => c.seq > startSeq).sort((a, b) => a.seq - b.seq);

  const fail = (seq: number, reason: ChainFailureReason): ChainVerifyResult => {
    failed = { ok: false, seq, reason };
    return failed;
  };

  const checkCheckpoint = async (
    cp: AuditCheckpoint,
    rowHash: string | undefined,
  ): Promise<boolean> => {
    if (!(await options.verifyCheckpoint(cp))) {
      fail(cp.seq, 'checkpoint_invalid');
      return false;
    }
    const p = decodeCheckpointPayload(cp.jws);
    if (p === undefined || p.seq !== cp.seq || p.hash !== cp.hash || p.time !== cp.time) {
      fail(cp.seq, 'checkpoint_mismatch');
      return false;
    }
    if (rowHash !== undefined && rowHash !== cp.hash) {
      fail(cp.seq, 'checkpoint_mismatch');
      return false;
    }
    return true;
  };

  /** Diagnoses a row at the expected seq that does not verify. */
  const diagnose = (
    rows: readonly AuditRow[],
    i: number,
    parsed: Parsed | undefined,
  ): ChainVerifyResult => {
    const row = rows[i]!;
    const n = row.seq;
    if (parsed === undefined) return fail(n, 'edited');
    const selfOk = safeHash(parsed, n, row.prevHash) === row.hash;
    if (selfOk) {
      // Self-consistent but not linked to the row before: that row was changed and
      // re-hashed (or this one forged on top of a foreign row).
      return fail(Math.max(n - 1, 1), recent.has(row.prevHash) ? 'deleted' : 'edited');
    }
    if (safeHash(parsed, n + 1, row.prevHash) === row.hash) {
      // This row belongs at n+1. If the next row belongs at n, they were swapped.
      const next = rows[i + 1];
      const nextParsed = next === undefined ? undefined : parseRow(next);
      if (next !== undefined && nextParsed !== undefined && next.prevHash === prevHash) {
        if (safeHash(nextParsed, n, next.prevHash) === next.hash) return fail(n, 'reordered');
      }
      return fail(n, 'deleted');
    }
    if (n > 1 && safeHash(parsed, n - 1, row.prevHash) === row.hash) return fail(n - 1, 'inserted');
    const j = recent.get(row.prevHash);
    if (j !== undefined && safeHash(parsed, j + 1, row.prevHash) === row.hash)
      return fail(n, 'reordered');
    return fail(n, 'edited');
  };

  return {
    async page(rows) {
      if (failed !== undefined) return failed;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!;
        const expected = prevSeq + 1;
        if (!Number.isSafeInteger(row.seq) || row.seq < expected) {
          return fail(
            expected,
            Number.isSafeInteger(row.seq) && row.seq > startSeq ? 'inserted' : 'reordered',
          );
        }
        if (row.seq > expected) {
          const later = rows.slice(i + 1).some((r) => r.seq === expected);
          return fail(expected, later ? 'reordered' : 'deleted');
        }
        const parsed = parseRow(row);
        const ok =
          parsed !== undefined &&
          row.prevHash === prevHash &&
          safeHash(parsed, row.seq, row.prevHash) === row.hash;
        if (!ok) return diagnose(rows, i, parsed);
        while (pending.length > 0 && pending[0]!.seq <= row.seq) {
          const cp = pending.shift()!;
          // A checkpoint at a seq we passed without a row cannot happen (seqs are contiguous).
          if (!(await checkCheckpoint(cp, cp.seq === row.seq ? row.hash : undefined)))
            return failed;
        }
        prevSeq = row.seq;
        prevHash = row.hash;
        count++;
        recent.set(row.hash, row.seq);
        if (recent.size > RECENT) recent.delete(recent.keys().next().value!);
      }
      return undefined;
    },
    async finish() {
      if (failed !== undefined) return failed;
      const cp = pending[0];
      if (cp !== undefined) {
        // A signed checkpoint past the last row: the chain was truncated.
        if (!(await checkCheckpoint(cp, undefined))) return failed!;
        return fail(prevSeq + 1, 'truncated');
      }
      return { ok: true, count, last: { seq: prevSeq, hash: prevHash } };
    },
  };
}

/**
 * Verifies rows (ascending seq, from 1 unless `options.from`) against their hashes,
 * links and the signed checkpoints.
 *
 * @example
 * const r = await verifyChain(rows, checkpoints, { verifyCheckpoint: (cp) => verifyJws(cp.jws) });
 * if (!r.ok) console.log(r.seq, r.reason);
 */
export async function verifyChain(
  rows: readonly AuditRow[],
  checkpoints: readonly AuditCheckpoint[],
  options: ChainVerifyOptions,
): Promise<ChainVerifyResult> {
  const v = createChainVerifier(checkpoints, options);
  const r = await v.page(rows);
  return r ?? v.finish();
}

/** The read side of an audit sink that {@link verifySink} needs. */
export interface AuditReadSource {
  read(options: { fromSeq: number; limit: number }): Promise<readonly AuditRow[]>;
  listCheckpoints(): Promise<readonly AuditCheckpoint[]>;
}

/** Verifies a whole sink page by page (default 1000 rows per page). */
export async function verifySink(
  source: AuditReadSource,
  options: ChainVerifyOptions & { pageSize?: number },
): Promise<ChainVerifyResult> {
  const pageSize = options.pageSize ?? 1000;
  const v = createChainVerifier(await source.listCheckpoints(), options);
  let fromSeq = (options.from?.seq ?? 0) + 1;
  for (;;) {
    const rows = await source.read({ fromSeq, limit: pageSize });
    if (rows.length === 0) break;
    const r = await v.page(rows);
    if (r !== undefined) return r;
    fromSeq = rows.at(-1)!.seq + 1;
    if (rows.length < pageSize) break;
  }
  return v.finish();
}
