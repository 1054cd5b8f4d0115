/**
 * Offline audit verification (`nexus audit verify`, `GET /v1/audit/verify`): walks the
 * hash chain page by page and checks every checkpoint signature against the Authority's
 * public keys as stored (no vault or master key needed).
 */
import { createPublicKey } from 'node:crypto';
import { compactVerify } from 'jose';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import { verifySink } from '../audit/chain.js';
import { openConfiguredStore } from './open-store.js';

export type AuditVerifyReport =
  | { ok: true; count: number; checkpoints: number }
  | { ok: false; seq: number; reason: string; checkpoints: number };

export async function verifyAuditLog(store: Store): Promise<AuditVerifyReport> {
  const keys = new Map(
    (await store.listSigningKeys()).map((k) => [
      k.kid,
      createPublicKey({ key: k.publicJwk as never, format: 'jwk' }),
    ]),
  );
  const checkpoints = await store.listCheckpoints();
  const result = await verifySink(
    {
      read: ({ fromSeq, limit }) => store.readAudit({ fromSeq, limit }),
      listCheckpoints: async () => checkpoints,
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
  return result.ok
    ? { ok: true, count: result.count, checkpoints: checkpoints.length }
    : { ok: false, seq: result.seq, reason: result.reason, checkpoints: checkpoints.length };
}

export async function verifyAuditOffline(config: Config): Promise<AuditVerifyReport> {
  const store = await openConfiguredStore(config, { readonly: true });
  try {
    return await verifyAuditLog(store);
  } finally {
    await store.close();
  }
}
