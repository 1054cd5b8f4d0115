/**
 * `GET /v1/status` and `nexus status`: one look at a running node: its listeners and
 * uptime, agents and live leases, each service's credential health, the audit chain's head
 * and lag, the limits in force. Names, counts and times only: never a credential value.
 */
import type { Authority } from '../authority/authority.js';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { Vault } from '../vault/vault.js';

/** Live leases counted at most (the count says `active_capped` when it reaches this). */
const LEASE_COUNT_CAP = 100_000;

export interface StatusInput {
  readonly config: () => Config;
  readonly startedAt: number;
  readonly clock: () => number;
  readonly proxyUrl: () => string | undefined;
  readonly adminUrl: () => string | undefined;
  readonly policyHash: () => string;
  readonly authority: Authority;
  readonly vault: Vault;
  readonly store: Store;
  readonly auditBacklog: () => { pending: number; lagSeconds: number };
  /** This process's held requests (under `--workers`, app/worker-status.ts sums them). */
  readonly approvalsPending: () => number;
}

/** What {@link nodeStatus} answers: one process's view (app/worker-status.ts merges workers'). */
export type NodeStatusDocument = Awaited<ReturnType<typeof nodeStatus>>;

/** The status document (snake_case, as the admin API answers it). */
export async function nodeStatus(s: StatusInput) {
  const config = s.config();
  const now = s.clock();
  const agents = s.authority.listAgents();
  const leases = await s.authority.listLeases({ active: true, limit: LEASE_COUNT_CAP });
  const services = await Promise.all(
    Object.values(config.services).map(async (svc) => {
      const name = svc.auth.credential;
      const meta = name === undefined ? undefined : await s.vault.describe(name);
      return {
        name: svc.name,
        upstream: svc.upstream,
        auth_type: svc.auth.type,
        credential: name ?? null,
        // `missing`: every request to the service fails with credential_unavailable.
        credential_status: name === undefined ? 'none' : meta === undefined ? 'missing' : 'set',
        credential_version: meta?.version ?? null,
      };
    }),
  );
  const checkpoint = await s.store.lastCheckpoint();
  const backlog = s.auditBacklog();
  return {
    status: 'ok',
    node: {
      proxy_url: s.proxyUrl() ?? null,
      admin_url: s.adminUrl() ?? null,
      started_at: new Date(s.startedAt).toISOString(),
      uptime_seconds: Math.floor((now - s.startedAt) / 1000),
      store: config.store.driver,
      policy_hash: s.policyHash(),
    },
    agents: { total: agents.length, disabled: agents.filter((a) => a.disabled).length },
    leases: {
      active: leases.filter((l) => !l.revoked).length,
      active_capped: leases.length >= LEASE_COUNT_CAP,
    },
    services,
    audit: {
      head_seq: (await s.store.lastAudit())?.seq ?? 0,
      pending_records: backlog.pending,
      lag_seconds: backlog.lagSeconds,
      last_checkpoint:
        checkpoint === undefined
          ? null
          : { seq: checkpoint.seq, time: new Date(checkpoint.time).toISOString() },
    },
    limits: config.limits.length,
    approvals_pending: s.approvalsPending(),
  };
}
