// Migration 2: an index on leases.parent_jti, so revoking a lease can walk its renewal
// chain without scanning the table once per generation; and a partial index of revoked
// leases by expiry, so a start reloads the live revocations without reading every lease
// ever issued.
import type { Migration } from './migration.js';

export const migration0002: Migration = {
  version: 2,
  name: 'lease_revocation_indexes',
  sqlite: `
CREATE INDEX leases_parent ON leases (parent_jti);
CREATE INDEX leases_revoked_expiry ON leases (expires_at) WHERE revoked_at IS NOT NULL;
`,
  postgres: `
CREATE INDEX leases_parent ON leases (parent_jti);
CREATE INDEX leases_revoked_expiry ON leases (expires_at) WHERE revoked_at IS NOT NULL;
`,
};
