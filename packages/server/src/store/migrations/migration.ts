// The shape of one schema migration. One numbered set serves every backend; each
// migration carries the SQL of each dialect, so both stores stay at the same version.

/** One schema step. Versions start at 1 and increase by 1. */
export interface Migration {
  version: number;
  name: string;
  /** SQLite statements, run in one transaction with the bookkeeping row. */
  sqlite: string;
  /** PostgreSQL statements, run in one transaction with the bookkeeping row. */
  postgres: string;
}
