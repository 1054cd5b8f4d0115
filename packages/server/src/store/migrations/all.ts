// The ordered list of schema migrations. Append only: never edit a released migration.
import { migration0001 } from './0001-initial.js';
import { migration0002 } from './0002-lease-revocation-indexes.js';
import { migration0003 } from './0003-replay-nonces.js';
import { migration0004 } from './0004-lease-delegation.js';
import { migration0005 } from './0005-oauth-pending.js';
import { migration0006 } from './0006-audit-index-trim.js';
import { migration0007 } from './0007-held-approvals.js';
import type { Migration } from './migration.js';

/** Every migration, ascending version. */
export const MIGRATIONS: readonly Migration[] = [
  migration0001,
  migration0002,
  migration0003,
  migration0004,
  migration0005,
  migration0006,
  migration0007,
];

/** The schema version this code writes and understands. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
