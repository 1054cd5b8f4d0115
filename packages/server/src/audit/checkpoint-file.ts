// Signed checkpoints outside the database (issue 10). Someone with write access to the
// store can delete the newest audit rows together with the newest checkpoints: what is
// left is a shorter chain that verifies. A checkpoint kept elsewhere (this file, shipped
// off the host, or the log line every checkpoint also produces) anchors the chain from
// outside: `nexus audit verify --against` checks that the database still holds the
// checkpoint's record with the same hash.
//
// The file is JSON Lines, one checkpoint per line, appended and fsynced as each one is
// signed: `{"seq":..,"hash":"..","time":..,"kid":"..","jws":"..."}`. Only the JWS counts
// when reading (it is what the Authority signed); the other members are for people.
// Nothing in it is secret.
import { open, readFile } from 'node:fs/promises';
import { decodeProtectedHeader } from 'jose';
import { NexusError } from '@nexus-proxy/protocol';
import { decodeCheckpointPayload, type AuditCheckpoint } from './chain.js';

/** The JWS `typ` of an audit checkpoint (`Authority.signCheckpoint`). */
export const CHECKPOINT_TYP = 'nexus-checkpoint+jws';

/** The checkpoint file next to a SQLite store: `<store>.checkpoints.jsonl`. */
export function checkpointFilePath(storePath: string): string {
  return `${storePath}.checkpoints.jsonl`;
}

/** One line of the checkpoint file (with its newline). */
export function checkpointLine(cp: AuditCheckpoint): string {
  return (
    JSON.stringify({ seq: cp.seq, hash: cp.hash, time: cp.time, kid: cp.kid, jws: cp.jws }) + '\n'
  );
}

/**
 * Appends a checkpoint to the file (created 0600) and waits until it is on disk.
 *
 * @example
 * await appendCheckpointFile(checkpointFilePath('.nexus/nexus.db'), cp);
 */
export async function appendCheckpointFile(path: string, cp: AuditCheckpoint): Promise<void> {
  const file = await open(path, 'a', 0o600);
  try {
    await file.write(checkpointLine(cp));
    await file.datasync();
  } finally {
    await file.close();
  }
}

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * The checkpoint a compact JWS claims to be (NOT verified: the chain verifier checks the
 * signature against the Authority's keys).
 *
 * @throws NexusError `validation_failed` when it is not an audit checkpoint JWS.
 */
export function parseCheckpointJws(jws: string): AuditCheckpoint {
  const invalid = () =>
    new NexusError(
      'validation_failed',
      'not a Nexus audit checkpoint (a JWS of type nexus-checkpoint+jws)',
    );
  if (!COMPACT_JWS.test(jws)) throw invalid();
  let kid: unknown;
  try {
    const header = decodeProtectedHeader(jws);
    if (header.typ !== CHECKPOINT_TYP) throw invalid();
    kid = header.kid;
  } catch {
    throw invalid();
  }
  const payload = decodeCheckpointPayload(jws);
  if (payload === undefined || typeof kid !== 'string' || !Number.isSafeInteger(payload.seq)) {
    throw invalid();
  }
  if (payload.seq < 1) throw invalid();
  return { seq: payload.seq, hash: payload.hash, time: payload.time, kid, jws };
}

/**
 * Reads checkpoints from `source`: a checkpoint file (JSON Lines as written by
 * {@link appendCheckpointFile}, or one compact JWS per line), or a compact JWS itself.
 * Ascending seq.
 *
 * @throws NexusError `validation_failed` naming the first line that is not a checkpoint,
 *   or when the source is neither a readable file nor a JWS.
 * @example
 * const external = await loadCheckpoints('/backup/nexus.db.checkpoints.jsonl');
 */
export async function loadCheckpoints(source: string): Promise<AuditCheckpoint[]> {
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    if (COMPACT_JWS.test(source.trim())) return [parseCheckpointJws(source.trim())];
    throw new NexusError('validation_failed', `cannot read the checkpoint file ${source}`, {
      cause: error,
    });
  }
  const out: AuditCheckpoint[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let jws: unknown = line;
    if (line.startsWith('{')) {
      try {
        jws = (JSON.parse(line) as { jws?: unknown }).jws;
      } catch {
        jws = undefined;
      }
    }
    try {
      if (typeof jws !== 'string') throw new Error('no jws');
      out.push(parseCheckpointJws(jws));
    } catch {
      throw new NexusError('validation_failed', `line ${i + 1} of ${source} is not a checkpoint`);
    }
  }
  if (out.length === 0) throw new NexusError('validation_failed', `${source} holds no checkpoint`);
  return out.sort((a, b) => a.seq - b.seq);
}
