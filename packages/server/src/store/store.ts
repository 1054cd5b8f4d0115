// The async persistence interface every Nexus component talks to. SQLite (embedded,
// default) and PostgreSQL (clusters) implement it against the same conformance suite
// (`conformance.ts`). Rows are plain typed objects; every time is a
// number of milliseconds since the epoch; absent optional values are `undefined`.
//
// Conventions shared by every method:
// - getters return `undefined` for an unknown key;
// - inserts throw `NexusError('conflict')` when the key exists;
// - mutations of an unknown key throw `NexusError('not_found')`;
// - inserts that reference an unknown agent throw `NexusError('not_found')`.

/** Where an agent was defined: `nexus.yaml` (`config`) or the admin API (`api`). */
export type AgentSource = 'config' | 'api';

/** An agent identity: the subject of leases. */
export interface AgentRow {
  name: string;
  roles: string[];
  disabled: boolean;
  source: AgentSource;
  createdAt: number;
}

/** Input of `upsertAgent`. `disabled` omitted keeps the stored flag (false for a new agent). */
export interface AgentUpsert {
  name: string;
  roles: string[];
  source: AgentSource;
  disabled?: boolean;
  /** Used only when the agent is created; an update keeps the original `createdAt`. */
  createdAt: number;
}

/** A one-time enrollment token, stored hashed (`tokenHash`), never in clear. */
export interface EnrollmentTokenRow {
  id: string;
  agent: string;
  tokenHash: string;
  /** RFC 8693 actor (on whose behalf), copied into the lease. */
  act?: string;
  /** Task id copied into the lease as `nexus_task`. */
  task?: string;
  expiresAt: number;
  usedAt?: number;
  createdAt: number;
}

/** Input of `createEnrollmentToken` (a new token is never used). */
export type EnrollmentTokenInsert = Omit<EnrollmentTokenRow, 'usedAt'>;

/** A JSON Web Key as stored (the lease's `cnf.jwk`, an Authority public key). */
export type StoredJwk = Record<string, unknown>;

/** An issued lease (the Authority's record of a `wit+jwt`). */
export interface LeaseRow {
  jti: string;
  agent: string;
  /** The agent's public key (`cnf.jwk`). */
  publicJwk: StoredJwk;
  /** RFC 7638 thumbprint of `publicJwk`. */
  jkt: string;
  issuedAt: number;
  expiresAt: number;
  /** `issuedAt` of the first lease of a renewal chain (caps the maximum lifetime). */
  chainStartedAt: number;
  /** The lease this one renewed. */
  parentJti?: string;
  act?: string;
  task?: string;
  /**
   * A sub-lease's `nexus_delegation`: the lease ids it was delegated from, root first
   * (spec §12.5). Revoking any of them revokes it.
   */
  delegation?: string[];
  revokedAt?: number;
}

/** Input of `insertLease` (a new lease is not revoked). */
export type LeaseInsert = Omit<LeaseRow, 'revokedAt'>;

/** Filter of `listLeases`. Results are newest first (`issuedAt` descending). */
export interface LeaseFilter {
  agent?: string;
  /**
   * Only leases active at this time: not revoked by jti, not covered by a revocation
   * epoch (agent or all), and `expiresAt > activeAt`.
   */
  activeAt?: number;
  /** Default 100, at most 10 000. */
  limit?: number;
}

/** Scope of a revocation epoch: every lease, or every lease of one agent. */
export type RevocationScope = 'all' | { agent: string };

/**
 * Revocation epochs: a lease is revoked when its `issuedAt <= all` or
 * `issuedAt <= agents[lease.agent]`.
 */
export interface RevocationEpochs {
  all?: number;
  agents: Record<string, number>;
}

/** Signature algorithms of Authority keys. */
export type SigningAlg = 'EdDSA' | 'ES256';

/** An Authority signing key. The private key is sealed by the vault (opaque here). */
export interface SigningKeyRow {
  kid: string;
  alg: SigningAlg;
  publicJwk: StoredJwk;
  /** Opaque sealed blob produced by `vault.seal`; never a clear private key. */
  privateKeyEnc: string;
  status: 'active' | 'retired';
  createdAt: number;
  retiredAt?: number;
  /** Publish the key in the JWKS until then (its last lease's expiry). */
  verifyUntil?: number;
}

/** Input of `insertSigningKey` (a new key is active). */
export type SigningKeyInsert = Omit<SigningKeyRow, 'status' | 'retiredAt' | 'verifyUntil'>;

/** An admin operator token, stored hashed. */
export interface OperatorTokenRow {
  id: string;
  name: string;
  tokenHash: string;
  createdAt: number;
  revokedAt?: number;
}

/** Input of `insertOperatorToken`. */
export type OperatorTokenInsert = Omit<OperatorTokenRow, 'revokedAt'>;

/** Credential metadata: never a value. */
export interface CredentialMeta {
  name: string;
  /** The current version (1, 2, ...). */
  version: number;
  fieldNames: string[];
  /** When the name was first set (survives new versions; reset after a delete). */
  createdAt: number;
  /** When the current version was written. */
  updatedAt: number;
}

/** The current version of a credential with its sealed payload (opaque to the store). */
export interface CredentialRow extends CredentialMeta {
  sealed: string;
}

/** Input of `putCredentialVersion`. */
export interface CredentialVersionInput {
  fieldNames: string[];
  createdAt: number;
  /**
   * Produces the sealed payload for the version the store allocated. Called exactly
   * once, synchronously, inside the store's transaction, so the sealed payload can bind
   * the version number (AEAD associated data). MUST NOT perform I/O.
   */
  seal: (version: number) => string;
}

/** What `putCredentialVersion` wrote. */
export interface CredentialVersionRow {
  name: string;
  version: number;
  fieldNames: string[];
  createdAt: number;
}

/** Address of one sealed blob held by the store (for master-key rotation). */
export type SealedRef =
  { kind: 'credential'; name: string; version: number } | { kind: 'signing_key'; kid: string };

/** One sealed blob held by the store. */
export interface SealedRecord {
  ref: SealedRef;
  sealed: string;
}

/** One compare-and-swap replacement of a sealed blob. */
export interface SealedReplacement {
  ref: SealedRef;
  /** The blob read by `listAllSealed`; the row is skipped if it changed since. */
  previous: string;
  sealed: string;
}

/** An audit record to append: the audit module computes the hash chain. */
export interface AuditAppend {
  time: number;
  kind: string;
  requestId: string;
  /** The record as JSON text (canonical JSON, as hashed). */
  record: string;
  prevHash: string;
  hash: string;
  /**
   * Index columns for `queryAudit`. When omitted, the store reads the top-level
   * string fields `agent`, `service` and `decision` of `record`. An agent URI is
   * indexed as the agent name (see `auditAgentKey`).
   */
  agent?: string;
  service?: string;
  decision?: string;
  /**
   * The three index fields above are explicit, an absent one meaning no value: the store
   * does not parse `record` (the audit writer sets it; parsing each record cost the
   * audit thread ~100 us per request, issue 14).
   */
  indexed?: boolean;
}

/** A stored audit record. `seq` is ascending and gap-free for one store. */
export interface AuditRow {
  seq: number;
  time: number;
  kind: string;
  requestId: string;
  record: string;
  prevHash: string;
  hash: string;
  agent?: string;
  service?: string;
  decision?: string;
  /**
   * The audit chain of the record, in `queryAudit` results of a backend that keeps one
   * chain per node (PostgreSQL); undefined with a single chain (SQLite).
   */
  chain?: string;
}

/** Filter of `queryAudit`. `since` is inclusive, `until` exclusive (ms). */
export interface AuditQuery {
  /** Agent name, or its `nexus://<trust-domain>/agent/<name>` URI (same result). */
  agent?: string;
  service?: string;
  decision?: string;
  requestId?: string;
  kind?: string;
  since?: number;
  until?: number;
  /** Default 100, at most 10 000. */
  limit?: number;
  /** Default `desc` (newest first). */
  order?: 'asc' | 'desc';
}

/** A signed audit checkpoint over the chain up to `seq`. */
export interface CheckpointRow {
  seq: number;
  hash: string;
  time: number;
  kid: string;
  jws: string;
}

/** A pending OAuth authorization-code link (its `state` hashed, its verifier sealed). */
export interface OAuthPendingRow {
  /** SHA-256 hex of the one-time `state`. */
  readonly stateHash: string;
  readonly service: string;
  /** The sealed link (principal, PKCE verifier, redirect URI): opened by the vault only. */
  readonly sealed: string;
  readonly expiresAt: number;
}

/**
 * A request held by an `approve` rule, as a cluster's nodes share it (issue 13): written by
 * the node that holds it, decided once by any node, taken and applied by the holder.
 */
export interface HeldApprovalRow {
  readonly id: string;
  /** The holding node's cluster id (its process's: app/cluster-sync.ts). */
  readonly node: string;
  /**
   * What `GET /v1/approvals` shows, as JSON. MUST NOT hold a header value, the query, the
   * body or a credential.
   */
  readonly view: string;
  /** The name (never the value) of the vault credential of the rule's webhook, if any. */
  readonly webhookSecret?: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** Past this time the holder is taken for dead: the row is no longer listed or decided. */
  readonly aliveUntil: number;
}

/** A decision written on a held request. */
export interface HeldDecision {
  readonly approved: boolean;
  /** Who decided, as JSON (`{name, token_id}`). */
  readonly approver: string;
}

/**
 * The persistence interface. Every method returns a Promise so that network backends
 * implement the same contract; `runStoreConformance` is the executable specification.
 */
export interface Store {
  // --- agents ---
  /** Creates or updates an agent; returns the stored row. */
  upsertAgent(input: AgentUpsert): Promise<AgentRow>;
  getAgent(name: string): Promise<AgentRow | undefined>;
  /** Every agent, by name. */
  listAgents(): Promise<AgentRow[]>;
  /**
   * Throws `not_found`. Disabling also deletes the agent's unused enrollment tokens in the
   * same transaction: none of them may work after a later enable.
   */
  setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow>;
  /**
   * Deletes an `api`-sourced agent (`config` agents: `conflict`; unknown: `not_found`),
   * in one transaction: deletes its enrollment tokens and marks its unrevoked leases
   * revoked at `at`. Lease rows stay as history.
   */
  deleteAgent(name: string, at: number): Promise<void>;

  // --- enrollment tokens ---
  /**
   * Throws `conflict` (id or hash exists), `not_found` (unknown agent) or `agent_disabled`
   * (checked atomically with the insert).
   */
  createEnrollmentToken(row: EnrollmentTokenInsert): Promise<void>;
  /**
   * Atomically marks the token used. Returns the row (with `usedAt = now`) only to the
   * first caller while `now < expiresAt`; unknown, used or expired -> `undefined`.
   */
  consumeEnrollmentToken(tokenHash: string, now: number): Promise<EnrollmentTokenRow | undefined>;

  // --- leases ---
  /** Throws `conflict` (jti exists) or `not_found` (unknown agent). */
  insertLease(row: LeaseInsert): Promise<void>;
  getLease(jti: string): Promise<LeaseRow | undefined>;
  listLeases(filter?: LeaseFilter): Promise<LeaseRow[]>;
  /** Marks the lease revoked (idempotent: the first `revokedAt` stays). Throws `not_found`. */
  revokeLease(jti: string, at: number): Promise<LeaseRow>;
  /**
   * Revokes the lease's whole renewal chain in one transaction: the leases it was renewed
   * from (`parentJti`, same agent) up to the first, and every lease renewed from any of
   * them (idempotent per lease, as `revokeLease`). Returns their jtis, oldest first.
   * Terminates on corrupt data (a `parentJti` cycle). Throws `not_found`.
   */
  revokeLeaseChain(jti: string, at: number): Promise<string[]>;
  /** The jtis of every revoked lease with `expiresAt > expiresAfter`, however many. */
  listRevokedLeaseIds(expiresAfter: number): Promise<string[]>;
  /** Raises the epoch of the scope to `at` (never lowers it). */
  setRevocationEpoch(scope: RevocationScope, at: number): Promise<void>;
  getRevocationEpochs(): Promise<RevocationEpochs>;

  // --- Authority signing keys ---
  /** Throws `conflict`. */
  insertSigningKey(row: SigningKeyInsert): Promise<void>;
  /** Every key, oldest first. */
  listSigningKeys(): Promise<SigningKeyRow[]>;
  /** Sets status `retired`, `retiredAt` and `verifyUntil`. Throws `not_found`. */
  retireSigningKey(kid: string, at: number, verifyUntil: number): Promise<SigningKeyRow>;

  // --- operator tokens ---
  /** Throws `conflict` (id or hash exists). */
  insertOperatorToken(row: OperatorTokenInsert): Promise<void>;
  /** The unrevoked token with that hash; revoked or unknown -> `undefined`. */
  findOperatorTokenByHash(tokenHash: string): Promise<OperatorTokenRow | undefined>;
  /** Every token (revoked included), oldest first. */
  listOperatorTokens(): Promise<OperatorTokenRow[]>;
  /** Idempotent; throws `not_found`. */
  revokeOperatorToken(id: string, at: number): Promise<OperatorTokenRow>;

  // --- credentials (sealed by the vault; the store never sees a value) ---
  /**
   * Writes version `last + 1` of `name` (1 for a new name; numbering continues after a
   * delete so a version number is never reused) and makes it current, atomically.
   * Older versions keep their metadata but their sealed blob is erased.
   */
  putCredentialVersion(name: string, input: CredentialVersionInput): Promise<CredentialVersionRow>;
  /** The current version; deleted or unknown -> `undefined`. */
  getCredential(name: string): Promise<CredentialRow | undefined>;
  /** Metadata of every live credential, by name. */
  listCredentials(): Promise<CredentialMeta[]>;
  /** Soft delete: the name disappears and every sealed blob of it is erased. Throws `not_found`. */
  deleteCredential(name: string, at: number): Promise<void>;
  /** Every sealed blob the store holds (credential versions and signing keys). */
  listAllSealed(): Promise<SealedRecord[]>;
  /**
   * Replaces sealed blobs in ONE transaction (compare-and-swap on `previous`); returns
   * how many rows changed.
   */
  replaceSealed(replacements: SealedReplacement[]): Promise<number>;

  // --- audit ---
  /**
   * Appends records in ONE transaction (group commit), durable when the promise
   * resolves; returns their seqs, ascending. The chain MUST link: each `prevHash`
   * equals the hash of the record before it (the first one: the last stored record's
   * hash, when there is one), else `conflict` and nothing is written.
   */
  appendAudit(rows: AuditAppend[]): Promise<number[]>;
  lastAudit(): Promise<AuditRow | undefined>;
  /** Records with `seq >= fromSeq`, ascending; `limit` default 1000, at most 10 000. */
  readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]>;
  queryAudit(filter: AuditQuery): Promise<AuditRow[]>;
  countAudit(): Promise<number>;
  /** Throws `conflict` (a checkpoint at that seq exists) or `not_found` (no record at seq). */
  insertCheckpoint(row: CheckpointRow): Promise<void>;
  /** Every checkpoint, ascending seq. */
  listCheckpoints(): Promise<CheckpointRow[]>;
  lastCheckpoint(): Promise<CheckpointRow | undefined>;

  // --- pending OAuth links (issue 13: any node completes a connect) ---
  /** Stores a pending link (`conflict` if its state hash exists); deletes expired ones. */
  putOAuthPending(row: OAuthPendingRow, now: number): Promise<void>;
  /** The service of a pending, unexpired link, or `undefined`. Does not consume it. */
  peekOAuthPending(stateHash: string, now: number): Promise<string | undefined>;
  /**
   * Consumes a link atomically: of concurrent calls, one gets the row, the others
   * `undefined`. An expired link is consumed and `undefined` returned.
   */
  takeOAuthPending(stateHash: string, now: number): Promise<OAuthPendingRow | undefined>;

  // --- requests held for approval, shared by a cluster (issue 13) ---
  /**
   * Stores a held request (`conflict` if its id exists); deletes the rows of nodes taken
   * for dead (`aliveUntil <= now`).
   */
  putHeldApproval(row: HeldApprovalRow, now: number): Promise<void>;
  /** Every undecided held request whose holder lives and that has not expired, oldest first. */
  listHeldApprovals(now: number): Promise<HeldApprovalRow[]>;
  /** One held request as {@link listHeldApprovals} sees it, or `undefined`. */
  getHeldApproval(id: string, now: number): Promise<HeldApprovalRow | undefined>;
  /**
   * Writes a decision atomically: of concurrent calls, one gets the row, the others (and
   * any call on a decided, expired, dead or unknown request) `undefined`.
   */
  decideHeldApproval(
    id: string,
    decision: HeldDecision,
    now: number,
  ): Promise<HeldApprovalRow | undefined>;
  /** Consumes the decided rows of `node`: each decision is returned to one caller once. */
  takeHeldDecisions(node: string): Promise<(HeldDecision & { readonly id: string })[]>;
  /**
   * The holder ends a request itself (timeout, agent gone, node stopping): deletes its row
   * atomically and returns the decision it carried, if one was written first.
   */
  endHeldApproval(id: string): Promise<HeldDecision | undefined>;
  /** Keeps the rows of a live `node` listed: sets their `aliveUntil`. */
  touchHeldApprovals(node: string, aliveUntil: number): Promise<void>;

  // --- meta ---
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  /** Releases the connection; further calls reject. Idempotent. */
  close(): Promise<void>;
}

/** Hard cap on any `limit`. */
export const MAX_LIST_LIMIT = 10_000;

/** Clamps a caller's `limit` to `[1, MAX_LIST_LIMIT]`. */
export function clampLimit(limit: number | undefined, fallback: number): number {
  if (limit === undefined || !Number.isFinite(limit)) return fallback;
  return Math.min(MAX_LIST_LIMIT, Math.max(1, Math.floor(limit)));
}

const AGENT_URI = /^nexus:\/\/[^/]+\/agent\/([^/]+)$/;

/**
 * The agent key the audit index uses: the agent NAME. Audit records carry the agent
 * URI (`nexus://<trust-domain>/agent/<name>`); agents are keyed by name everywhere
 * else in the store, so both the index and the `queryAudit` filter reduce a URI to it.
 */
export function auditAgentKey(agent: string): string {
  return AGENT_URI.exec(agent)?.[1] ?? agent;
}

/**
 * The index columns of an audit record: explicit fields win, else the top-level
 * string fields of the record JSON. Shared by every backend so they index alike.
 */
export function auditIndexFields(row: AuditAppend): {
  agent?: string;
  service?: string;
  decision?: string;
} {
  let parsed: Record<string, unknown> = {};
  if (
    row.indexed !== true &&
    (row.agent === undefined || row.service === undefined || row.decision === undefined)
  ) {
    try {
      const value: unknown = JSON.parse(row.record);
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        parsed = value as Record<string, unknown>;
      }
    } catch {
      // A record that is not JSON still gets stored; it just has no index fields.
    }
  }
  const pick = (explicit: string | undefined, key: string): string | undefined => {
    if (explicit !== undefined) return explicit;
    const v = parsed[key];
    return typeof v === 'string' ? v : undefined;
  };
  const agent = pick(row.agent, 'agent');
  // An explicit index already holds the agent's name (auditAgentKey is idempotent anyway).
  return {
    agent: agent === undefined ? undefined : auditAgentKey(agent),
    service: pick(row.service, 'service'),
    decision: pick(row.decision, 'decision'),
  };
}
