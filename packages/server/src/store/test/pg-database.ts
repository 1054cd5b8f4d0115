// Test databases on the PostgreSQL server the suites share (127.0.0.1:5432, trust auth,
// user postgres; `.ci/run` starts it when it is down). Every test makes a database of its
// own with a unique name and drops it afterwards, so suites never see each other's rows
// and a run leaves nothing behind. NEXUS_TEST_PG_URL overrides the server.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server the tests use (a database name is appended). */
export const TEST_PG_SERVER = process.env.NEXUS_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

/** A database made for one test. */
export interface TestDatabase {
  readonly name: string;
  /** `postgres://.../<name>`: what a node's `store:` names. */
  readonly url: string;
  /** Drops the database, closing whatever is still connected to it. Idempotent. */
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: `${TEST_PG_SERVER}/postgres` });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates an empty database named `nexus_test_<prefix>_<random>`.
 *
 * @example
 * const db = await createTestDatabase('conformance');
 * const store = await openPostgresStore(db.url);
 * // ...
 * await store.close();
 * await db.drop();
 */
export async function createTestDatabase(prefix = 't'): Promise<TestDatabase> {
  const name = `nexus_test_${prefix.replace(/[^a-z0-9]/g, '')}_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  let dropped = false;
  return {
    name,
    url: `${TEST_PG_SERVER}/${name}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
