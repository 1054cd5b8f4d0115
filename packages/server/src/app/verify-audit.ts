/**
 * Offline audit verification (`nexus audit verify`, `GET /v1/audit/verify`): walks the
 * hash chain page by page and checks every checkpoint signature against the Authority's
 * public keys as stored (no vault or master key needed). With checkpoints kept outside
 * the database (`--against`), it also checks that the chain still holds each of them:
 * a chain that ends before one is `truncated`, one whose record differs is
 * `checkpoint_mismatch`.
 */
import { createPublicKey } from 'node:crypto';
import { compactVerify } from 'jose';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import { verifySink, type AuditCheckpoint, type ChainFailureReason } from '../audit/chain.js';
import { openConfiguredStore } from './open-store.js';

/** The newest external checkpoint the chain was checked against. */
export interface VerifiedAnchor {
  seq: number;
  hash: string;
  /** Milliseconds since the epoch (when it was signed). */
  time: number;
}

export type AuditVerifyReport =
  | { ok: true; count: number; checkpoints: number; against?: VerifiedAnchor }
  | { ok: false; seq: number; reason: ChainFailureReason; checkpoints: number };

/** Options of {@link verifyAuditLog}. */
export interface AuditVerifyOptions {
  /**
   * Checkpoints kept outside the database (`audit/checkpoint-file.ts`): each MUST verify
   * with the Authority's keys and MUST be in the chain, record and hash.
   */
  against?: readonly AuditCheckpoint[];
}

export async function verifyAuditLog(
  store: Store,
  options: AuditVerifyOptions = {},
): Promise<AuditVerifyReport> {
  const keys = new Map(
    (await store.listSigningKeys()).map((k) => [
      k.kid,
      createPublicKey({ key: k.publicJwk as never, format: 'jwk' }),
    ]),
  );
  const checkpoints = await store.listCheckpoints();
  const against = options.against ?? [];
  const result = await verifySink(
    {
      read: ({ fromSeq, limit }) => store.readAudit({ fromSeq, limit }),
      listCheckpoints: async () => [...checkpoints, ...against],
    },
    {
      verifyCheckpoint: async (cp) => {
        const key = keys.get(cp.kid);
        if (key === undefined) return false;
        try {
          await compactVerify(cp.jws, key, { algorithms: ['EdDSA', 'ES256'] });
          return true;
        } catch {
          return false;
        }
      },
    },
  );
  if (!result.ok) {
    return { ok: false, seq: result.seq, reason: result.reason, checkpoints: checkpoints.length };
  }
  const newest = against.reduce<AuditCheckpoint | undefined>(
    (a, c) => (a === undefined || c.seq > a.seq ? c : a),
    undefined,
  );
  return {
    ok: true,
    count: result.count,
    checkpoints: checkpoints.length,
    ...(newest === undefined
      ? {}
      : { against: { seq: newest.seq, hash: newest.hash, time: newest.time } }),
  };
}

export async function verifyAuditOffline(
  config: Config,
  options: AuditVerifyOptions = {},
): Promise<AuditVerifyReport> {
  const store = await openConfiguredStore(config, { readonly: true });
  try {
    return await verifyAuditLog(store, options);
  } finally {
    await store.close();
  }
}
