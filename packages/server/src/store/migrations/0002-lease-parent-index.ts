// Migration 2: an index on leases.parent_jti, so revoking a lease can find every renewal
// made from it (its lineage) without scanning the table once per generation.
import type { Migration } from './migration.js';

export const migration0002: Migration = {
  version: 2,
  name: 'lease_parent_index',
  sqlite: `CREATE INDEX leases_parent ON leases (parent_jti);`,
};
