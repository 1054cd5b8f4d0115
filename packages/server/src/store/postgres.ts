// The PostgreSQL backend of `Store` (`store: postgres://...`), for clusters: any number of
// identical nodes share one database. It runs the same conformance suite as SQLite
// (`conformance.ts`) and the same numbered migrations (`migrations/`), with the SQL of its
// own dialect, through `pg` directly (docs/architecture.md, "Cluster mode", says why not
// a query builder yet).
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
import {
  type Row,
  num,
  optNum,
  str,
  nul,
  toAgent,
  toEnrollment,
  toLease,
  toSigningKey,
  toOperatorToken,
  toCredentialMeta,
  toAudit,
  toCheckpoint,
  pendingRow,
} from './rows.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations/all.js';
import {
  auditAgentKey,
  auditIndexFields,
  clampLimit,
  type AgentRow,
  type AgentUpsert,
  type AuditAppend,
  type AuditQuery,
  type AuditRow,
  type CheckpointRow,
  type CredentialMeta,
  type CredentialRow,
  type CredentialVersionInput,
  type CredentialVersionRow,
  type EnrollmentTokenInsert,
  type EnrollmentTokenRow,
  type LeaseFilter,
  type LeaseInsert,
  type LeaseRow,
  type OAuthPendingRow,
  type OperatorTokenInsert,
  type OperatorTokenRow,
  type RevocationEpochs,
  type RevocationScope,
  type SealedRecord,
  type SealedReplacement,
  type SigningKeyInsert,
  type SigningKeyRow,
  type Store,
} from './store.js';
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

// --- row mapping ---

interface ImplOptions {
  readonly chain: string;
  readonly node: string;
  readonly schemaVersion: number;
  readonly clock: () => number;
  /** False for a chain view: closing it leaves the pool open. */
  readonly owner: boolean;
}

class PostgresStoreImpl implements PostgresStore {
  readonly pool: pg.Pool;
  readonly chain: string;
  readonly schemaVersion: number;
  readonly #options: ImplOptions;
  #closed = false;
  /** Set once this chain's `audit_chains` row exists. */
  #chainRegistered = false;

  constructor(pool: pg.Pool, options: ImplOptions) {
    this.pool = pool;
    this.chain = options.chain;
    this.schemaVersion = options.schemaVersion;
    this.#options = options;
  }

  #check(): void {
    if (this.#closed) throw new NexusError('internal_error', 'store is closed');
  }

  async #rows(sql: string, params: unknown[] = [], what = 'row'): Promise<Row[]> {
    this.#check();
    try {
      return (await this.pool.query(sql, params)).rows as Row[];
    } catch (error) {
      throw mapError(error, what);
    }
  }

  async #row(sql: string, params: unknown[] = [], what = 'row'): Promise<Row | undefined> {
    return (await this.#rows(sql, params, what))[0];
  }

  /** Runs `fn` in a transaction on one connection; rolls back on any error. */
  async #tx<T>(fn: (q: TxQuery) => Promise<T>, what = 'row'): Promise<T> {
    this.#check();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw mapError(error, what);
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
      const q: TxQuery = {
        rows: async (sql, params = []) => (await client.query(sql, params)).rows as Row[],
        row: async (sql, params = []) => (await client.query(sql, params)).rows[0] as Row,
        count: async (sql, params = []) => (await client.query(sql, params)).rowCount ?? 0,
      };
      const result = await fn(q);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw mapError(error, what);
    } finally {
      client.off('error', onError);
      // A connection whose rollback failed is in an unknown state: drop it from the pool.
      client.release(broken);
    }
  }

  // --- agents ---

  async upsertAgent(input: AgentUpsert): Promise<AgentRow> {
    const row = await this.#row(
      `INSERT INTO agents (name, roles, disabled, source, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name) DO UPDATE SET
         roles = excluded.roles,
         source = excluded.source,
         disabled = CASE WHEN $6::boolean IS NULL THEN agents.disabled ELSE excluded.disabled END
       RETURNING *`,
      [
        input.name,
        JSON.stringify(input.roles),
        input.disabled === true,
        input.source,
        input.createdAt,
        input.disabled === undefined ? null : true,
      ],
      'agent',
    );
    return toAgent(row as Row);
  }

  async getAgent(name: string): Promise<AgentRow | undefined> {
    const row = await this.#row('SELECT * FROM agents WHERE name = $1', [name]);
    return row === undefined ? undefined : toAgent(row);
  }

  async listAgents(): Promise<AgentRow[]> {
    return (await this.#rows('SELECT * FROM agents ORDER BY name COLLATE "C"')).map(toAgent);
  }

  setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow> {
    return this.#tx(async (q) => {
      const row = await q.row('UPDATE agents SET disabled = $1 WHERE name = $2 RETURNING *', [
        disabled,
        name,
      ]);
      if (row === undefined) throw new NexusError('not_found', 'agent not found');
      // MUST: disabling voids the agent's outstanding enrollment tokens, in the same
      // transaction, so none of them works again after a later enable (issue 10).
      if (disabled) {
        await q.count('DELETE FROM enrollment_tokens WHERE agent = $1 AND used_at IS NULL', [name]);
      }
      return toAgent(row);
    });
  }

  deleteAgent(name: string, at: number): Promise<void> {
    return this.#tx(async (q) => {
      const row = await q.row('SELECT source FROM agents WHERE name = $1 FOR UPDATE', [name]);
      if (row === undefined) throw new NexusError('not_found', 'agent not found');
      if (row.source !== 'api') {
        throw new NexusError('conflict', 'agent is defined in the config file; remove it there');
      }
      await q.count('UPDATE leases SET revoked_at = $1 WHERE agent = $2 AND revoked_at IS NULL', [
        at,
        name,
      ]);
      await q.count('DELETE FROM agents WHERE name = $1', [name]);
    });
  }

  // --- enrollment tokens ---

  createEnrollmentToken(row: EnrollmentTokenInsert): Promise<void> {
    return this.#tx(async (q) => {
      // FOR SHARE: a concurrent disable (which voids tokens) waits for this insert, or
      // this insert sees the agent disabled.
      const agent = await q.row('SELECT disabled FROM agents WHERE name = $1 FOR SHARE', [
        row.agent,
      ]);
      if (agent === undefined)
        throw new NexusError('not_found', 'enrollment token refers to an unknown agent');
      if (agent.disabled === true) throw new NexusError('agent_disabled');
      await q.count(
        `INSERT INTO enrollment_tokens (id, agent, token_hash, act, task, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [
          row.id,
          row.agent,
          row.tokenHash,
          nul(row.act),
          nul(row.task),
          row.expiresAt,
          row.createdAt,
        ],
      );
    }, 'enrollment token');
  }

  async consumeEnrollmentToken(
    tokenHash: string,
    now: number,
  ): Promise<EnrollmentTokenRow | undefined> {
    // One statement: READ COMMITTED re-checks the WHERE clause after a concurrent update,
    // so exactly one caller gets the row.
    const row = await this.#row(
      `UPDATE enrollment_tokens SET used_at = $1
       WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
       RETURNING *`,
      [now, tokenHash],
    );
    return row === undefined ? undefined : toEnrollment(row);
  }

  // --- leases ---

  insertLease(row: LeaseInsert): Promise<void> {
    return this.#tx(async (q) => {
      if (
        (await q.row('SELECT 1 FROM agents WHERE name = $1 FOR SHARE', [row.agent])) === undefined
      ) {
        throw new NexusError('not_found', 'lease refers to an unknown agent');
      }
      await q.count(
        `INSERT INTO leases (jti, agent, public_jwk, jkt, issued_at, expires_at,
           chain_started_at, parent_jti, act, task, delegation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          row.jti,
          row.agent,
          JSON.stringify(row.publicJwk),
          row.jkt,
          row.issuedAt,
          row.expiresAt,
          row.chainStartedAt,
          nul(row.parentJti),
          nul(row.act),
          nul(row.task),
          row.delegation === undefined ? null : JSON.stringify(row.delegation),
        ],
      );
    }, 'lease');
  }

  async getLease(jti: string): Promise<LeaseRow | undefined> {
    const row = await this.#row('SELECT * FROM leases WHERE jti = $1', [jti]);
    return row === undefined ? undefined : toLease(row);
  }

  async listLeases(filter: LeaseFilter = {}): Promise<LeaseRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.agent !== undefined) {
      params.push(filter.agent);
      where.push(`l.agent = $${params.length}`);
    }
    if (filter.activeAt !== undefined) {
      params.push(filter.activeAt);
      where.push(
        `l.revoked_at IS NULL AND l.expires_at > $${params.length} AND NOT EXISTS (
           SELECT 1 FROM revocation_epochs e
           WHERE l.issued_at <= e.at AND (e.kind = 'all' OR (e.kind = 'agent' AND e.agent = l.agent)))`,
      );
    }
    params.push(clampLimit(filter.limit, 100));
    const sql = `SELECT l.* FROM leases l ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY l.issued_at DESC, l.jti COLLATE "C" LIMIT $${params.length}`;
    return (await this.#rows(sql, params)).map(toLease);
  }

  async revokeLease(jti: string, at: number): Promise<LeaseRow> {
    const row = await this.#row(
      'UPDATE leases SET revoked_at = coalesce(revoked_at, $1) WHERE jti = $2 RETURNING *',
      [at, jti],
    );
    if (row === undefined) throw new NexusError('not_found', 'lease not found');
    return toLease(row);
  }

  revokeLeaseChain(jti: string, at: number): Promise<string[]> {
    return this.#tx(async (q) => {
      const start = await q.row('SELECT agent, parent_jti FROM leases WHERE jti = $1', [jti]);
      if (start === undefined) throw new NexusError('not_found', 'lease not found');
      const agent = str(start.agent);
      // Up to the first lease of the chain (a visited set stops a corrupt cycle).
      let root = jti;
      const seen = new Set([jti]);
      for (let parent = start.parent_jti; typeof parent === 'string' && !seen.has(parent);) {
        const row = await q.row('SELECT parent_jti FROM leases WHERE jti = $1 AND agent = $2', [
          parent,
          agent,
        ]);
        if (row === undefined) break;
        seen.add(parent);
        root = parent;
        parent = row.parent_jti;
      }
      // Down from it: UNION (not UNION ALL) visits each jti once, so a cycle ends too.
      const chain = (
        await q.rows(
          `WITH RECURSIVE chain(jti) AS (
             SELECT $1::text
             UNION
             SELECT l.jti FROM leases l JOIN chain ON l.parent_jti = chain.jti WHERE l.agent = $2
           )
           SELECT chain.jti FROM chain JOIN leases ON leases.jti = chain.jti
           ORDER BY leases.issued_at, chain.jti COLLATE "C"`,
          [root, agent],
        )
      ).map((r) => str(r.jti));
      await q.count(
        'UPDATE leases SET revoked_at = coalesce(revoked_at, $1) WHERE jti = ANY($2::text[])',
        [at, chain],
      );
      return chain;
    });
  }

  async listRevokedLeaseIds(expiresAfter: number): Promise<string[]> {
    return (
      await this.#rows('SELECT jti FROM leases WHERE revoked_at IS NOT NULL AND expires_at > $1', [
        expiresAfter,
      ])
    ).map((r) => str(r.jti));
  }

  async setRevocationEpoch(scope: RevocationScope, at: number): Promise<void> {
    const [kind, agent] = scope === 'all' ? ['all', ''] : ['agent', scope.agent];
    await this.#rows(
      `INSERT INTO revocation_epochs (kind, agent, at) VALUES ($1, $2, $3)
       ON CONFLICT (kind, agent) DO UPDATE SET at = greatest(revocation_epochs.at, excluded.at)`,
      [kind, agent, at],
    );
  }

  async getRevocationEpochs(): Promise<RevocationEpochs> {
    const epochs: RevocationEpochs = { agents: {} };
    for (const r of await this.#rows('SELECT kind, agent, at FROM revocation_epochs')) {
      if (r.kind === 'all') epochs.all = num(r.at);
      else epochs.agents[str(r.agent)] = num(r.at);
    }
    return epochs;
  }

  // --- signing keys ---

  async insertSigningKey(row: SigningKeyInsert): Promise<void> {
    await this.#rows(
      `INSERT INTO signing_keys (kid, alg, public_jwk, private_key_enc, status, created_at)
       VALUES ($1, $2, $3, $4, 'active', $5)`,
      [row.kid, row.alg, JSON.stringify(row.publicJwk), row.privateKeyEnc, row.createdAt],
      'signing key',
    );
  }

  async listSigningKeys(): Promise<SigningKeyRow[]> {
    return (
      await this.#rows('SELECT * FROM signing_keys ORDER BY created_at, kid COLLATE "C"')
    ).map(toSigningKey);
  }

  async retireSigningKey(kid: string, at: number, verifyUntil: number): Promise<SigningKeyRow> {
    const row = await this.#row(
      `UPDATE signing_keys SET status = 'retired', retired_at = $1, verify_until = $2
       WHERE kid = $3 RETURNING *`,
      [at, verifyUntil, kid],
    );
    if (row === undefined) throw new NexusError('not_found', 'signing key not found');
    return toSigningKey(row);
  }

  // --- operator tokens ---

  async insertOperatorToken(row: OperatorTokenInsert): Promise<void> {
    await this.#rows(
      'INSERT INTO operator_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)',
      [row.id, row.name, row.tokenHash, row.createdAt],
      'operator token',
    );
  }

  async findOperatorTokenByHash(tokenHash: string): Promise<OperatorTokenRow | undefined> {
    const row = await this.#row(
      'SELECT * FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL',
      [tokenHash],
    );
    return row === undefined ? undefined : toOperatorToken(row);
  }

  async listOperatorTokens(): Promise<OperatorTokenRow[]> {
    return (
      await this.#rows('SELECT * FROM operator_tokens ORDER BY created_at, id COLLATE "C"')
    ).map(toOperatorToken);
  }

  async revokeOperatorToken(id: string, at: number): Promise<OperatorTokenRow> {
    const row = await this.#row(
      'UPDATE operator_tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING *',
      [at, id],
    );
    if (row === undefined) throw new NexusError('not_found', 'operator token not found');
    return toOperatorToken(row);
  }

  // --- credentials ---

  putCredentialVersion(name: string, input: CredentialVersionInput): Promise<CredentialVersionRow> {
    return this.#tx(async (q) => {
      // One statement allocates the version and locks the name until commit: concurrent
      // writers (on any node) wait here and then see the version this one took.
      const allocated = await q.row(
        `INSERT INTO credentials (name, last_version, created_at) VALUES ($1, 1, $2)
         ON CONFLICT (name) DO UPDATE SET
           last_version = credentials.last_version + 1,
           created_at = CASE WHEN credentials.deleted_at IS NULL
             THEN credentials.created_at ELSE excluded.created_at END,
           deleted_at = NULL
         RETURNING last_version`,
        [name, input.createdAt],
      );
      const version = num((allocated as Row).last_version);
      const sealed = input.seal(version);
      // Only the current version keeps a sealed payload: superseded values are erased.
      await q.count(
        'UPDATE credential_versions SET sealed = NULL WHERE name = $1 AND sealed IS NOT NULL',
        [name],
      );
      await q.count(
        `INSERT INTO credential_versions (name, version, field_names, sealed, created_at)
         VALUES ($1, $2, $3, $4, $5)`,
        [name, version, JSON.stringify(input.fieldNames), sealed, input.createdAt],
      );
      return { name, version, fieldNames: [...input.fieldNames], createdAt: input.createdAt };
    }, 'credential');
  }

  async getCredential(name: string): Promise<CredentialRow | undefined> {
    const row = await this.#row(
      `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at, v.sealed
       FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
       WHERE c.name = $1 AND c.deleted_at IS NULL AND v.sealed IS NOT NULL`,
      [name],
    );
    return row === undefined ? undefined : { ...toCredentialMeta(row), sealed: str(row.sealed) };
  }

  async listCredentials(): Promise<CredentialMeta[]> {
    return (
      await this.#rows(
        `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at
         FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
         WHERE c.deleted_at IS NULL
         ORDER BY c.name COLLATE "C"`,
      )
    ).map(toCredentialMeta);
  }

  deleteCredential(name: string, at: number): Promise<void> {
    return this.#tx(async (q) => {
      const changed = await q.count(
        'UPDATE credentials SET deleted_at = $1 WHERE name = $2 AND deleted_at IS NULL',
        [at, name],
      );
      if (changed === 0) throw new NexusError('not_found', 'credential not found');
      await q.count('UPDATE credential_versions SET sealed = NULL WHERE name = $1', [name]);
    });
  }

  async listAllSealed(): Promise<SealedRecord[]> {
    const records: SealedRecord[] = [];
    for (const r of await this.#rows(
      `SELECT name, version, sealed FROM credential_versions WHERE sealed IS NOT NULL
       ORDER BY name COLLATE "C", version`,
    )) {
      records.push({
        ref: { kind: 'credential', name: str(r.name), version: num(r.version) },
        sealed: str(r.sealed),
      });
    }
    for (const r of await this.#rows(
      'SELECT kid, private_key_enc FROM signing_keys ORDER BY kid COLLATE "C"',
    )) {
      records.push({
        ref: { kind: 'signing_key', kid: str(r.kid) },
        sealed: str(r.private_key_enc),
      });
    }
    return records;
  }

  async replaceSealed(replacements: SealedReplacement[]): Promise<number> {
    if (replacements.length === 0) return 0;
    return this.#tx(async (q) => {
      let changed = 0;
      for (const { ref, previous, sealed } of replacements) {
        changed +=
          ref.kind === 'credential'
            ? await q.count(
                'UPDATE credential_versions SET sealed = $1 WHERE name = $2 AND version = $3 AND sealed = $4',
                [sealed, ref.name, ref.version, previous],
              )
            : await q.count(
                'UPDATE signing_keys SET private_key_enc = $1 WHERE kid = $2 AND private_key_enc = $3',
                [sealed, ref.kid, previous],
              );
      }
      return changed;
    });
  }

  // --- audit (this store's chain) ---

  async appendAudit(rows: AuditAppend[]): Promise<number[]> {
    if (rows.length === 0) return [];
    return this.#tx(async (q) => {
      if (!this.#chainRegistered) {
        await q.count(
          `INSERT INTO audit_chains (chain, node, started_at) VALUES ($1, $2, $3)
           ON CONFLICT (chain) DO NOTHING`,
          [this.chain, this.#options.node, this.#options.clock()],
        );
      }
      const last = await q.row(
        'SELECT seq, hash FROM audit WHERE chain = $1 ORDER BY seq DESC LIMIT 1',
        [this.chain],
      );
      let previous = last === undefined ? undefined : str(last.hash);
      let seq = last === undefined ? 0 : num(last.seq);
      const cols = {
        seq: [] as number[],
        time: [] as number[],
        kind: [] as string[],
        requestId: [] as string[],
        agent: [] as (string | null)[],
        service: [] as (string | null)[],
        decision: [] as (string | null)[],
        record: [] as string[],
        prevHash: [] as string[],
        hash: [] as string[],
      };
      for (const row of rows) {
        if (previous !== undefined && row.prevHash !== previous) {
          // Another writer appended first: the caller's chain forked. Nothing is written.
          throw new NexusError('conflict', 'audit record does not link to the last stored record');
        }
        const index = auditIndexFields(row);
        seq += 1;
        cols.seq.push(seq);
        cols.time.push(row.time);
        cols.kind.push(row.kind);
        cols.requestId.push(row.requestId);
        cols.agent.push(nul(index.agent));
        cols.service.push(nul(index.service));
        cols.decision.push(nul(index.decision));
        cols.record.push(row.record);
        cols.prevHash.push(row.prevHash);
        cols.hash.push(row.hash);
        previous = row.hash;
      }
      // One statement for the whole group commit. Two writers on one chain (which a
      // random chain id makes impossible, and a reused one would not) collide on the
      // primary key: the second fails with `conflict` and writes nothing.
      const inserted = await q.rows(
        `INSERT INTO audit (chain, seq, time, kind, request_id, agent, service, decision,
           record, prev_hash, hash)
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[],
           $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
         RETURNING seq`,
        [
          this.chain,
          cols.seq,
          cols.time,
          cols.kind,
          cols.requestId,
          cols.agent,
          cols.service,
          cols.decision,
          cols.record,
          cols.prevHash,
          cols.hash,
        ],
      );
      this.#chainRegistered = true;
      return inserted.map((r) => num(r.seq)).sort((a, b) => a - b);
    }, 'audit record');
  }

  async lastAudit(): Promise<AuditRow | undefined> {
    const row = await this.#row('SELECT * FROM audit WHERE chain = $1 ORDER BY seq DESC LIMIT 1', [
      this.chain,
    ]);
    return row === undefined ? undefined : toAudit(row);
  }

  async readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]> {
    return (
      await this.#rows('SELECT * FROM audit WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3', [
        this.chain,
        options.fromSeq,
        clampLimit(options.limit, 1000),
      ])
    ).map(toAudit);
  }

  /** Searches every chain (the whole cluster); rows carry their `chain`; time order. */
  async queryAudit(filter: AuditQuery): Promise<AuditRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: string, value: unknown): void => {
      params.push(value);
      where.push(clause.replace('?', `$${params.length}`));
    };
    if (filter.agent !== undefined) add('agent = ?', auditAgentKey(filter.agent));
    if (filter.service !== undefined) add('service = ?', filter.service);
    if (filter.decision !== undefined) add('decision = ?', filter.decision);
    if (filter.requestId !== undefined) add('request_id = ?', filter.requestId);
    if (filter.kind !== undefined) add('kind = ?', filter.kind);
    if (filter.since !== undefined) add('time >= ?', filter.since);
    if (filter.until !== undefined) add('time < ?', filter.until);
    const order = filter.order === 'asc' ? 'ASC' : 'DESC';
    params.push(clampLimit(filter.limit, 100));
    const sql = `SELECT * FROM audit ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY time ${order}, chain COLLATE "C" ${order}, seq ${order} LIMIT $${params.length}`;
    return (await this.#rows(sql, params)).map((r) => ({ ...toAudit(r), chain: str(r.chain) }));
  }

  /** Records of this store's chain. */
  async countAudit(): Promise<number> {
    const row = await this.#row('SELECT count(*) AS n FROM audit WHERE chain = $1', [this.chain]);
    return num((row as Row).n);
  }

  async insertCheckpoint(row: CheckpointRow): Promise<void> {
    await this.#rows(
      'INSERT INTO audit_checkpoints (chain, seq, hash, time, kid, jws) VALUES ($1, $2, $3, $4, $5, $6)',
      [this.chain, row.seq, row.hash, row.time, row.kid, row.jws],
      'checkpoint',
    );
  }

  async listCheckpoints(): Promise<CheckpointRow[]> {
    return (
      await this.#rows('SELECT * FROM audit_checkpoints WHERE chain = $1 ORDER BY seq', [
        this.chain,
      ])
    ).map(toCheckpoint);
  }

  async lastCheckpoint(): Promise<CheckpointRow | undefined> {
    const row = await this.#row(
      'SELECT * FROM audit_checkpoints WHERE chain = $1 ORDER BY seq DESC LIMIT 1',
      [this.chain],
    );
    return row === undefined ? undefined : toCheckpoint(row);
  }

  async listAuditChains(): Promise<AuditChainInfo[]> {
    return (
      await this.#rows(
        `SELECT c.chain, c.node, c.started_at FROM audit_chains c
         WHERE EXISTS (SELECT 1 FROM audit a WHERE a.chain = c.chain)
         ORDER BY c.started_at, c.chain COLLATE "C"`,
      )
    ).map((r) => ({ chain: str(r.chain), node: str(r.node), startedAt: num(r.started_at) }));
  }

  auditChain(chain: string): PostgresStore {
    return new PostgresStoreImpl(this.pool, { ...this.#options, chain, owner: false });
  }

  // --- pending OAuth links ---

  async putOAuthPending(row: OAuthPendingRow, now: number): Promise<void> {
    await this.#rows('DELETE FROM oauth_pending WHERE expires_at <= $1', [now]);
    await this.#rows(
      'INSERT INTO oauth_pending (state_hash, service, sealed, expires_at) VALUES ($1, $2, $3, $4)',
      [row.stateHash, row.service, row.sealed, row.expiresAt],
    );
  }

  async peekOAuthPending(stateHash: string, now: number): Promise<string | undefined> {
    const row = await this.#row(
      'SELECT service FROM oauth_pending WHERE state_hash = $1 AND expires_at > $2',
      [stateHash, now],
    );
    return row === undefined ? undefined : str(row.service);
  }

  async takeOAuthPending(stateHash: string, now: number): Promise<OAuthPendingRow | undefined> {
    const row = await this.#row('DELETE FROM oauth_pending WHERE state_hash = $1 RETURNING *', [
      stateHash,
    ]);
    return row === undefined ? undefined : pendingRow(row, now);
  }

  // --- meta ---

  async getMeta(key: string): Promise<string | undefined> {
    const row = await this.#row('SELECT value FROM meta WHERE key = $1', [key]);
    return row === undefined ? undefined : str(row.value);
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#rows(
      'INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      [key, value],
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#options.owner) await this.pool.end();
  }
}

/** The queries a transaction body runs on its connection. */
interface TxQuery {
  rows(sql: string, params?: unknown[]): Promise<Row[]>;
  /** The first row, or undefined. */
  row(sql: string, params?: unknown[]): Promise<Row | undefined>;
  /** The number of rows the statement affected. */
  count(sql: string, params?: unknown[]): Promise<number>;
}
