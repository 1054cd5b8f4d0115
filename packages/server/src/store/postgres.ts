// The PostgreSQL backend of `Store` (`store: postgres://...`), for clusters: any number of
// identical nodes share one database. It runs the same conformance suite as SQLite
// (`conformance.ts`), the same queries (queries.ts, Kysely-built, run here through `pg`)
// and the same numbered migrations (`migrations/`, with the DDL of its own dialect).
//
// What differs from SQLite, on purpose:
// - Every read-modify-write is one statement or a transaction that locks the rows it
//   reads (`FOR UPDATE` / `FOR SHARE`, or `INSERT ... ON CONFLICT DO UPDATE`), so
//   concurrent nodes stay correct under READ COMMITTED.
// - The audit log holds one hash chain per node process (`chain`): a single head shared
//   by every node would need a global lock per request. The audit methods of a store act
//   on its own chain; `queryAudit` searches every chain; `listAuditChains` and
//   `auditChain` let `audit verify` walk each one (docs/spec/nexus-v1.md).
// - A database that cannot be reached fails every call with `store_unavailable`
//   (503, fail closed); the pool reconnects by itself when the database is back.
import { hostname } from 'node:os';
import { NexusError } from '@nexus-proxy/protocol';
import pg from 'pg';
import { StoreError } from './errors.js';
import { type Row, num, optNum, str } from './rows.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations/all.js';
import { Dialect, KyselyStore, rows, type Plan, type PlanKind } from './queries.js';
import type { Store } from './store.js';
import { randomId } from '../util/ids.js';

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /**
   * The audit chain this store appends to. Default: a new random id, so every node
   * process writes a chain of its own and no two writers ever share a head.
   */
  chain?: string;
  /** A label recorded with the chain (default `<hostname>/<pid>`), for operators. */
  node?: string;
  /** Open without writing: no migration; the schema must be the latest. */
  readonly?: boolean;
  /** Apply pending migrations (default true unless `readonly`). */
  migrate?: boolean;
  /** Most connections in the pool. Default 10. */
  maxConnections?: number;
  /** How long to wait for a connection before failing with `store_unavailable`. Default 3000 ms. */
  connectTimeoutMs?: number;
  /** Clock for `schema_migrations.applied_at` and `audit_chains.started_at`. */
  clock?: () => number;
  /** Called with errors of idle pooled connections (the pool replaces them). */
  onIdleError?: (error: Error) => void;
}

/** One audit chain of a PostgreSQL store. */
export interface AuditChainInfo {
  chain: string;
  node: string;
  startedAt: number;
}

/** A `Store` on PostgreSQL. */
export interface PostgresStore extends Store {
  /** The audit chain this store's audit methods act on. */
  readonly chain: string;
  /** The schema version of the database. */
  readonly schemaVersion: number;
  /** Every audit chain that holds records, oldest first. */
  listAuditChains(): Promise<AuditChainInfo[]>;
  /**
   * A view of this store whose audit methods act on `chain` (for `audit verify`); it
   * shares this store's connections, and closing it closes nothing.
   */
  auditChain(chain: string): PostgresStore;
  /** The connection pool (LISTEN/NOTIFY and shared replay use it). */
  readonly pool: pg.Pool;
}

type Queryable = pg.Pool | pg.PoolClient;

/** SQLSTATE classes that mean "the database is not there" rather than "the query is wrong". */
function isUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') {
    // pg's own errors without a code: a pool ended, a connection terminated or timed out.
    const message = (error as { message?: unknown } | null)?.message;
    return typeof message === 'string' && /connection|terminat|timeout/i.test(message);
  }
  return (
    code.startsWith('08') || // connection exception
    code.startsWith('57P') || // admin shutdown, crash shutdown, cannot connect now
    code === '53300' || // too many connections
    code === '3D000' || // the database is gone (dropped, or not yet restored)
    code.startsWith('E') // ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND...
  );
}

/** Maps PostgreSQL errors to store codes; anything else passes through. */
function mapError(error: unknown, what: string): unknown {
  if (error instanceof NexusError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === '23505') {
    return new NexusError('conflict', `${what} already exists`, { cause: error });
  }
  if (code === '23503') {
    return new NexusError('not_found', `${what} refers to an unknown row`, { cause: error });
  }
  if (isUnreachable(error)) {
    // MUST NOT carry the cause's message to a client: it may name the host or the user.
    return new NexusError('store_unavailable', 'the database is unreachable', { cause: error });
  }
  return error;
}

function tooNew(version: number): StoreError {
  return new StoreError(
    'store_version_unsupported',
    `database schema version ${version} is newer than this Nexus supports (${LATEST_SCHEMA_VERSION}); upgrade Nexus`,
  );
}

async function schemaVersionOf(db: Queryable): Promise<number> {
  const table = await db.query("SELECT to_regclass('schema_migrations') AS t");
  if ((table.rows[0] as Row).t === null) return 0;
  const row = (await db.query('SELECT max(version) AS v FROM schema_migrations')).rows[0] as Row;
  return optNum(row.v) ?? 0;
}

/**
 * Applies pending migrations in one transaction under an advisory lock, so nodes that
 * start together migrate once; returns the resulting version.
 */
async function migrate(pool: pg.Pool, clock: () => number): Promise<number> {
  const client = await pool.connect();
  const onError = () => undefined; // see #tx: the next statement fails instead
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('nexus.schema_migrations'))");
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at BIGINT NOT NULL
    )`);
    const current = await schemaVersionOf(client);
    if (current > LATEST_SCHEMA_VERSION) throw tooNew(current);
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.postgres);
      await client.query(
        'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
        [m.version, m.name, clock()],
      );
    }
    const version = await schemaVersionOf(client);
    await client.query('COMMIT');
    return version;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.off('error', onError);
    client.release();
  }
}

/**
 * Opens a PostgreSQL store and brings its schema up to date. The database must exist
 * (Nexus creates tables, never databases). A password is never part of the URL: `pg`
 * reads `PGPASSWORD` (or `~/.pgpass`) itself.
 *
 * @throws StoreError `store_version_unsupported`; NexusError `store_unavailable` when the
 *   database cannot be reached.
 * @example
 * const store = await openPostgresStore('postgres://nexus@db.internal/nexus');
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const clock = options.clock ?? Date.now;
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    idleTimeoutMillis: 30_000,
    // Reconnects transparently, but never hangs a request on a dead TCP peer for long.
    keepAlive: true,
  });
  // An idle connection that dies (database restarted) MUST NOT crash the process: the
  // pool drops it and the next query opens a new one.
  pool.on('error', (error) => options.onIdleError?.(error));
  try {
    const readonly = options.readonly === true;
    let schemaVersion: number;
    if (!readonly && options.migrate !== false) {
      schemaVersion = await migrate(pool, clock);
    } else {
      schemaVersion = await schemaVersionOf(pool);
      if (schemaVersion > LATEST_SCHEMA_VERSION) throw tooNew(schemaVersion);
      if (schemaVersion < LATEST_SCHEMA_VERSION) {
        throw new StoreError(
          'store_version_unsupported',
          `database schema version ${schemaVersion} is older than ${LATEST_SCHEMA_VERSION}; start a node (or nexus init) on it once to migrate`,
        );
      }
    }
    return new PostgresStoreImpl(pool, {
      chain: options.chain ?? randomId(12),
      node: options.node ?? `${hostname()}/${process.pid}`,
      schemaVersion,
      clock,
      owner: true,
    });
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw mapError(error, 'store');
  }
}

interface ImplOptions {
  readonly chain: string;
  readonly node: string;
  readonly schemaVersion: number;
  readonly clock: () => number;
  /** False for a chain view: closing it leaves the pool open. */
  readonly owner: boolean;
}

class PostgresStoreImpl extends KyselyStore implements PostgresStore {
  readonly pool: pg.Pool;
  readonly chain: string;
  readonly schemaVersion: number;
  readonly #options: ImplOptions;
  #closed = false;

  constructor(pool: pg.Pool, options: ImplOptions) {
    super(new Dialect('postgres'), options);
    this.pool = pool;
    this.chain = options.chain;
    this.schemaVersion = options.schemaVersion;
    this.#options = options;
  }

  /**
   * Runs a plan: statement by statement on the pool, or, when `kind.tx`, in a transaction
   * on one connection (rolled back on any error). Errors become store codes (`mapError`).
   */
  protected async execute<T>(kind: PlanKind, body: () => Plan<T>): Promise<T> {
    if (this.#closed) throw new NexusError('internal_error', 'store is closed');
    if (!kind.tx) {
      try {
        return await drive(this.pool, body());
      } catch (error) {
        throw mapError(error, kind.what);
      }
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw mapError(error, kind.what);
    }
    let broken = false;
    // A checked-out connection that dies between two statements emits 'error' with no
    // pool listener attached: without this one it would crash the process. The failure
    // reaches the transaction through its next statement instead.
    const onError = () => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await drive(client, body());
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw mapError(error, kind.what);
    } finally {
      client.off('error', onError);
      // A connection whose rollback failed is in an unknown state: drop it from the pool.
      client.release(broken);
    }
  }

  async listAuditChains(): Promise<AuditChainInfo[]> {
    const query = this.d.db
      .selectFrom('audit_chains as c')
      .select(['c.chain', 'c.node', 'c.started_at'])
      .where(({ exists, selectFrom }) =>
        exists(selectFrom('audit as a').select('a.seq').whereRef('a.chain', '=', 'c.chain')),
      )
      .orderBy('c.started_at')
      .orderBy(this.d.bytes('c.chain'));
    return this.execute({ write: false, tx: false, what: 'row' }, function* () {
      return (yield* rows(query)).map((r) => ({
        chain: str(r.chain),
        node: str(r.node),
        startedAt: num(r.started_at),
      }));
    });
  }

  auditChain(chain: string): PostgresStore {
    return new PostgresStoreImpl(this.pool, { ...this.#options, chain, owner: false });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#options.owner) await this.pool.end();
  }
}

/** Runs each statement of `plan` on `db`, in order. */
async function drive<T>(db: Queryable, plan: Plan<T>): Promise<T> {
  let next = plan.next();
  while (next.done !== true) {
    const { statement, want } = next.value;
    const result = await db.query(statement.sql, statement.parameters as unknown[]);
    next = plan.next(
      want === 'rows' ? result.rows : want === 'row' ? result.rows[0] : (result.rowCount ?? 0),
    );
  }
  return next.value;
}
