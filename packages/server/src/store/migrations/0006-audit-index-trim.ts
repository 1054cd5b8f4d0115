// Migration 6 (issue 14): fewer and smaller audit indexes on SQLite, whose every group
// commit updates each of them. Its queries (`GET /v1/audit`) order by `seq`, so
// `(agent)` and `(service)` serve them in index order where `(agent, time)` and
// `(service, time)` needed a sort; `time` alone had no query it served better than
// walking `seq` from the newest row (time follows seq on a single chain). The
// PostgreSQL store keeps its indexes: it orders by time across the chains of a cluster.
import type { Migration } from './migration.js';

export const migration0006: Migration = {
  version: 6,
  name: 'audit_index_trim',
  sqlite: `
DROP INDEX audit_time;
DROP INDEX audit_agent_time;
DROP INDEX audit_service_time;
CREATE INDEX audit_agent ON audit (agent);
CREATE INDEX audit_service ON audit (service);
`,
  postgres: `
SELECT 1;
`,
};
