// Migration 1: the initial schema (agents, enrollment tokens, leases, revocation
// epochs, signing keys, operator tokens, credentials, audit, checkpoints, meta).
import type { Migration } from './migration.js';

/** Initial schema. Times are INTEGER milliseconds; JSON is TEXT. */
export const migration0001: Migration = {
  version: 1,
  name: 'initial',
  sqlite: `
CREATE TABLE agents (
  name TEXT PRIMARY KEY,
  roles TEXT NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
  source TEXT NOT NULL CHECK (source IN ('config', 'api')),
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  agent TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE,
  act TEXT,
  task TEXT,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX enrollment_tokens_agent ON enrollment_tokens (agent);

-- Leases outlive their agent as history (no foreign key); deleteAgent revokes them.
CREATE TABLE leases (
  jti TEXT PRIMARY KEY,
  agent TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  jkt TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  chain_started_at INTEGER NOT NULL,
  parent_jti TEXT,
  act TEXT,
  task TEXT,
  revoked_at INTEGER
) STRICT;
CREATE INDEX leases_agent_issued ON leases (agent, issued_at);
CREATE INDEX leases_issued ON leases (issued_at);

-- kind 'all' uses agent ''.
CREATE TABLE revocation_epochs (
  kind TEXT NOT NULL CHECK (kind IN ('all', 'agent')),
  agent TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (kind, agent)
) STRICT;

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
  public_jwk TEXT NOT NULL,
  private_key_enc TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
  created_at INTEGER NOT NULL,
  retired_at INTEGER,
  verify_until INTEGER
) STRICT;

CREATE TABLE operator_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;

-- One row per name; deleted_at set by a soft delete. last_version never decreases.
CREATE TABLE credentials (
  name TEXT PRIMARY KEY,
  last_version INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  deleted_at INTEGER
) STRICT;

-- sealed is NULL once the version is superseded or the credential deleted.
CREATE TABLE credential_versions (
  name TEXT NOT NULL REFERENCES credentials (name),
  version INTEGER NOT NULL,
  field_names TEXT NOT NULL,
  sealed TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (name, version)
) STRICT;

CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  kind TEXT NOT NULL,
  request_id TEXT NOT NULL,
  agent TEXT,
  service TEXT,
  decision TEXT,
  record TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_request_id ON audit (request_id);
CREATE INDEX audit_agent_time ON audit (agent, time);
CREATE INDEX audit_service_time ON audit (service, time);

-- Append-only: the database itself refuses to rewrite history.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;

CREATE TABLE audit_checkpoints (
  seq INTEGER PRIMARY KEY REFERENCES audit (seq),
  hash TEXT NOT NULL,
  time INTEGER NOT NULL,
  kid TEXT NOT NULL,
  jws TEXT NOT NULL
) STRICT;

CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`,
  // PostgreSQL: the same tables, with one difference a cluster needs: the audit log holds
  // one hash chain per node process (`chain`), since one global chain head would need a
  // global lock on every request (docs/spec/nexus-v1.md, "Audit across nodes").
  postgres: `
CREATE TABLE agents (
  name TEXT PRIMARY KEY,
  roles TEXT NOT NULL,
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  source TEXT NOT NULL CHECK (source IN ('config', 'api')),
  created_at BIGINT NOT NULL
);

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  agent TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
  token_hash TEXT NOT NULL UNIQUE,
  act TEXT,
  task TEXT,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  created_at BIGINT NOT NULL
);
CREATE INDEX enrollment_tokens_agent ON enrollment_tokens (agent);

CREATE TABLE leases (
  jti TEXT PRIMARY KEY,
  agent TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  jkt TEXT NOT NULL,
  issued_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  chain_started_at BIGINT NOT NULL,
  parent_jti TEXT,
  act TEXT,
  task TEXT,
  revoked_at BIGINT
);
CREATE INDEX leases_agent_issued ON leases (agent, issued_at);
CREATE INDEX leases_issued ON leases (issued_at);

CREATE TABLE revocation_epochs (
  kind TEXT NOT NULL CHECK (kind IN ('all', 'agent')),
  agent TEXT NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (kind, agent)
);

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
  public_jwk TEXT NOT NULL,
  private_key_enc TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
  created_at BIGINT NOT NULL,
  retired_at BIGINT,
  verify_until BIGINT
);

CREATE TABLE operator_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);

CREATE TABLE credentials (
  name TEXT PRIMARY KEY,
  last_version INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  deleted_at BIGINT
);

CREATE TABLE credential_versions (
  name TEXT NOT NULL REFERENCES credentials (name),
  version INTEGER NOT NULL,
  field_names TEXT NOT NULL,
  sealed TEXT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (name, version)
);

-- One row per audit chain (a node process): who wrote it, from when.
CREATE TABLE audit_chains (
  chain TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  started_at BIGINT NOT NULL
);

CREATE TABLE audit (
  chain TEXT NOT NULL REFERENCES audit_chains (chain),
  seq BIGINT NOT NULL,
  time BIGINT NOT NULL,
  kind TEXT NOT NULL,
  request_id TEXT NOT NULL,
  agent TEXT,
  service TEXT,
  decision TEXT,
  record TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_request_id ON audit (request_id);
CREATE INDEX audit_agent_time ON audit (agent, time);
CREATE INDEX audit_service_time ON audit (service, time);

-- Append-only: the database itself refuses to rewrite history.
CREATE FUNCTION nexus_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit is append-only'; END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION nexus_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION nexus_audit_append_only();

CREATE TABLE audit_checkpoints (
  chain TEXT NOT NULL,
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  time BIGINT NOT NULL,
  kid TEXT NOT NULL,
  jws TEXT NOT NULL,
  PRIMARY KEY (chain, seq),
  FOREIGN KEY (chain, seq) REFERENCES audit (chain, seq)
);

CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
};
