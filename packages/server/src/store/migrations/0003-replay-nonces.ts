// Migration 3: the replay records nodes share (issue 13). A node on PostgreSQL without
// Redis records each accepted (lease, nonce) pair here with one unique insert, so a
// request accepted by one node is a replay at every other (spec §9, REPLAY-SHARED).
// SQLite gets the same table so that both backends keep one schema version.
import type { Migration } from './migration.js';

export const migration0003: Migration = {
  version: 3,
  name: 'replay_nonces',
  sqlite: `
CREATE TABLE replay_nonces (
  key TEXT PRIMARY KEY,
  forget_at INTEGER NOT NULL
) STRICT;
CREATE INDEX replay_nonces_forget ON replay_nonces (forget_at);
`,
  postgres: `
CREATE TABLE replay_nonces (
  key TEXT PRIMARY KEY,
  forget_at BIGINT NOT NULL
);
CREATE INDEX replay_nonces_forget ON replay_nonces (forget_at);
`,
};
