// Migration 4: a sub-lease's delegation chain (its `nexus_delegation`, the lease ids it
// was delegated from, root first, as a JSON array; NULL for a lease not delegated), so
// the lease listing can say a sub-lease is revoked when a lease above it is, as the
// proxy decides (spec §12.5).
import type { Migration } from './migration.js';

export const migration0004: Migration = {
  version: 4,
  name: 'lease_delegation',
  sqlite: `
ALTER TABLE leases ADD COLUMN delegation TEXT;
`,
  postgres: `
ALTER TABLE leases ADD COLUMN delegation TEXT;
`,
};
