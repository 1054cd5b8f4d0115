// Row mapping shared by the SQLite and PostgreSQL stores: both return rows with the
// same column names (the migrations keep them equal), so one mapper serves both.
import type {
  AgentRow,
  EnrollmentTokenRow,
  LeaseRow,
  StoredJwk,
  SigningKeyRow,
  OperatorTokenRow,
  CredentialMeta,
  AuditRow,
  CheckpointRow,
  OAuthPendingRow,
  HeldApprovalRow,
} from './store.js';

export type Row = Record<string, unknown>;

export const num = (value: unknown): number => Number(value);
export const optNum = (value: unknown): number | undefined =>
  value === null || value === undefined ? undefined : Number(value);
export const str = (value: unknown): string => String(value);
export const optStr = (value: unknown): string | undefined =>
  value === null || value === undefined ? undefined : String(value);
export const nul = <T>(value: T | undefined): T | null => (value === undefined ? null : value);

export const toAgent = (r: Row): AgentRow => ({
  name: str(r.name),
  roles: JSON.parse(str(r.roles)) as string[],
  // SQLite stores 0/1, PostgreSQL a boolean: Number() reads both.
  disabled: num(r.disabled) === 1,
  source: str(r.source) as AgentRow['source'],
  createdAt: num(r.created_at),
});

export const toEnrollment = (r: Row): EnrollmentTokenRow => ({
  id: str(r.id),
  agent: str(r.agent),
  tokenHash: str(r.token_hash),
  act: optStr(r.act),
  task: optStr(r.task),
  expiresAt: num(r.expires_at),
  usedAt: optNum(r.used_at),
  createdAt: num(r.created_at),
});

export const toLease = (r: Row): LeaseRow => ({
  jti: str(r.jti),
  agent: str(r.agent),
  publicJwk: JSON.parse(str(r.public_jwk)) as StoredJwk,
  jkt: str(r.jkt),
  issuedAt: num(r.issued_at),
  expiresAt: num(r.expires_at),
  chainStartedAt: num(r.chain_started_at),
  parentJti: optStr(r.parent_jti),
  act: optStr(r.act),
  task: optStr(r.task),
  ...(typeof r.delegation === 'string' ? { delegation: JSON.parse(r.delegation) as string[] } : {}),
  revokedAt: optNum(r.revoked_at),
});

export const toSigningKey = (r: Row): SigningKeyRow => ({
  kid: str(r.kid),
  alg: str(r.alg) as SigningKeyRow['alg'],
  publicJwk: JSON.parse(str(r.public_jwk)) as StoredJwk,
  privateKeyEnc: str(r.private_key_enc),
  status: str(r.status) as SigningKeyRow['status'],
  createdAt: num(r.created_at),
  retiredAt: optNum(r.retired_at),
  verifyUntil: optNum(r.verify_until),
});

export const toOperatorToken = (r: Row): OperatorTokenRow => ({
  id: str(r.id),
  name: str(r.name),
  tokenHash: str(r.token_hash),
  createdAt: num(r.created_at),
  revokedAt: optNum(r.revoked_at),
});

export const toCredentialMeta = (r: Row): CredentialMeta => ({
  name: str(r.name),
  version: num(r.version),
  fieldNames: JSON.parse(str(r.field_names)) as string[],
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
});

export const toAudit = (r: Row): AuditRow => ({
  seq: num(r.seq),
  time: num(r.time),
  kind: str(r.kind),
  requestId: str(r.request_id),
  record: str(r.record),
  prevHash: str(r.prev_hash),
  hash: str(r.hash),
  agent: optStr(r.agent),
  service: optStr(r.service),
  decision: optStr(r.decision),
});

export const toCheckpoint = (r: Row): CheckpointRow => ({
  seq: num(r.seq),
  hash: str(r.hash),
  time: num(r.time),
  kid: str(r.kid),
  jws: str(r.jws),
});

/** A pending OAuth link, or `undefined` once expired at `now`. */
export const pendingRow = (r: Row, now: number): OAuthPendingRow | undefined =>
  num(r.expires_at) <= now
    ? undefined
    : {
        stateHash: str(r.state_hash),
        service: str(r.service),
        sealed: str(r.sealed),
        expiresAt: num(r.expires_at),
      };

export const toHeldApproval = (r: Row): HeldApprovalRow => {
  const webhookSecret = optStr(r.webhook_secret);
  return {
    id: str(r.id),
    node: str(r.node),
    view: str(r.view),
    ...(webhookSecret === undefined ? {} : { webhookSecret }),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    aliveUntil: num(r.alive_until),
  };
};
