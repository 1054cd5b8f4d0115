// Migration 7: requests held by `approve` rules, as a cluster's nodes share them (issue 13).
// A held request waits in the node its agent's connection reached; the row lets any node
// list it and decide it. The holding node writes it (`node`, its process's cluster id) and
// keeps `alive_until` ahead of the clock while it lives, so a node that dies leaves no
// request listed for long; a decision is written once (`decision IS NULL` in the UPDATE's
// WHERE) and the holder takes it (DELETE ... RETURNING) and applies it.
// MUST: `view` holds what `GET /v1/approvals` shows (identity, route, intent, rule, times),
// never a header value, the query, the body or a credential; `webhook_secret` is the NAME
// of the vault credential of the rule's webhook, never its value. SQLite gets the same
// table (one schema version); only a PostgreSQL cluster writes it.
import type { Migration } from './migration.js';

export const migration0007: Migration = {
  version: 7,
  name: 'held_approvals',
  sqlite: `
CREATE TABLE held_approvals (
  id TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  view TEXT NOT NULL,
  webhook_secret TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  alive_until INTEGER NOT NULL,
  decision TEXT CHECK (decision IN ('approved', 'denied')),
  approver TEXT
) STRICT;
CREATE INDEX held_approvals_node ON held_approvals (node);
`,
  postgres: `
CREATE TABLE held_approvals (
  id TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  view TEXT NOT NULL,
  webhook_secret TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  alive_until BIGINT NOT NULL,
  decision TEXT CHECK (decision IN ('approved', 'denied')),
  approver TEXT
);
CREATE INDEX held_approvals_node ON held_approvals (node);
`,
};
