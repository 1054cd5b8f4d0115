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
import { NexusError } from '@nexus-proxy/protocol';
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

/**
 * The verdict. On a store with one chain per node (PostgreSQL), `chains` is how many
 * chains were verified (`count` and `checkpoints` are their sums) and a failure names
 * its `chain`.
 */
export type AuditVerifyReport =
  | { ok: true; count: number; checkpoints: number; against?: VerifiedAnchor; chains?: number }
  | {
      ok: false;
      seq: number;
      reason: ChainFailureReason;
      checkpoints: number;
      chain?: string;
    };

/** Options of {@link verifyAuditLog}. */
export interface AuditVerifyOptions {
  /**
   * Checkpoints kept outside the database (`audit/checkpoint-file.ts`): each MUST verify
   * with the Authority's keys and MUST be in the chain, record and hash.
   */
  against?: readonly AuditCheckpoint[];
}

/** A store with one audit chain per node (`store/postgres.ts`). */
interface ChainedStore extends Store {
  listAuditChains(): Promise<{ chain: string }[]>;
  auditChain(chain: string): Store;
}

function isChained(store: Store): store is ChainedStore {
  return 'listAuditChains' in store && 'auditChain' in store;
}

/**
 * Verifies the audit log of a store: its one chain (SQLite), or every node's chain in
 * turn (PostgreSQL), each from its genesis with its own checkpoints.
 */
export async function verifyAuditLog(
  store: Store,
  options: AuditVerifyOptions = {},
): Promise<AuditVerifyReport> {
  if (!isChained(store)) return verifyChain(store, options);
  if ((options.against ?? []).length > 0) {
    // An external checkpoint does not say which chain it vouches for.
    throw new NexusError(
      'request_invalid',
      '--against checks one chain (a SQLite store); a PostgreSQL store has one chain per node',
    );
  }
  let count = 0;
  let checkpoints = 0;
  const chains = await store.listAuditChains();
  for (const { chain } of chains) {
    const r = await verifyChain(store.auditChain(chain), {});
    if (!r.ok) return { ...r, checkpoints: checkpoints + r.checkpoints, chain };
    count += r.count;
    checkpoints += r.checkpoints;
  }
  return { ok: true, count, checkpoints, chains: chains.length };
}

async function verifyChain(store: Store, options: AuditVerifyOptions): Promise<AuditVerifyReport> {
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
