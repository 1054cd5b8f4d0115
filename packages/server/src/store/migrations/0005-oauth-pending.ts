// Migration 5: pending OAuth authorization-code links (issue 13). A connect started on one
// node of a cluster is completed by the provider's callback on whichever node receives it,
// so the one-time `state` (stored as its SHA-256) and the sealed PKCE verifier live in the
// store, not in one node's memory. SQLite gets the same table (one schema version).
import type { Migration } from './migration.js';

export const migration0005: Migration = {
  version: 5,
  name: 'oauth_pending',
  sqlite: `
CREATE TABLE oauth_pending (
  state_hash TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  sealed TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX oauth_pending_expires ON oauth_pending (expires_at);
`,
  postgres: `
CREATE TABLE oauth_pending (
  state_hash TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  sealed TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_pending_expires ON oauth_pending (expires_at);
`,
};
