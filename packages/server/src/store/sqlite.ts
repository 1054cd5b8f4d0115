// The embedded SQLite backend of `Store` (better-sqlite3, WAL, synchronous=FULL).
// better-sqlite3 is synchronous: each method runs to completion before its promise
// settles, and every read-modify-write runs in a `BEGIN IMMEDIATE` transaction so
// several processes on one file stay correct (the write lock is taken up front).
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { NexusError } from '@nexus/protocol';
import Database from 'better-sqlite3';
import { StoreError } from './errors.js';
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
  type OperatorTokenInsert,
  type OperatorTokenRow,
  type RevocationEpochs,
  type RevocationScope,
  type SealedRecord,
  type SealedReplacement,
  type SigningKeyInsert,
  type SigningKeyRow,
  type Store,
  type StoredJwk,
} from './store.js';

/** Options of `openSqliteStore`. */
export interface SqliteStoreOptions {
  /** Open without writing: no migration, no pragma that writes; the file must exist. */
  readonly?: boolean;
  /** How long a writer waits for another connection's lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Clock for `schema_migrations.applied_at`. Default `Date.now`. */
  clock?: () => number;
}

/** A `Store` on SQLite, with the file it uses. */
export interface SqliteStore extends Store {
  /** The database path (`:memory:` for an in-memory store). */
  readonly path: string;
  /** The schema version of the open database. */
  readonly schemaVersion: number;
}

type Db = Database.Database;
type Row = Record<string, unknown>;

const num = (value: unknown): number => Number(value);
const optNum = (value: unknown): number | undefined =>
  value === null || value === undefined ? undefined : Number(value);
const str = (value: unknown): string => String(value);
const optStr = (value: unknown): string | undefined =>
  value === null || value === undefined ? undefined : String(value);
const nul = <T>(value: T | undefined): T | null => (value === undefined ? null : value);

/** Maps SQLite constraint failures to store codes; anything else passes through. */
function mapError(error: unknown, what: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
    return new NexusError('conflict', `${what} already exists`, { cause: error });
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return new NexusError('not_found', `${what} refers to an unknown row`, { cause: error });
  }
  return error;
}

function schemaVersionOf(db: Db): number {
  const table = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    .get();
  if (table === undefined) return 0;
  const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as Row;
  return optNum(row.v) ?? 0;
}

function tooNew(version: number): StoreError {
  return new StoreError(
    'store_version_unsupported',
    `database schema version ${version} is newer than this Nexus supports (${LATEST_SCHEMA_VERSION}); upgrade Nexus`,
  );
}

/** Applies pending migrations in one immediate transaction; returns the resulting version. */
function migrate(db: Db, clock: () => number): number {
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at INTEGER NOT NULL
    ) STRICT`);
    const current = schemaVersionOf(db);
    if (current > LATEST_SCHEMA_VERSION) throw tooNew(current);
    const record = db.prepare(
      'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
    );
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sqlite);
      record.run(m.version, m.name, clock());
    }
    return schemaVersionOf(db);
  });
  return run.immediate();
}

/**
 * Opens (creating if needed) a SQLite store and brings its schema up to date.
 *
 * - WAL journal, `synchronous=FULL` (a resolved `appendAudit` is on disk),
 *   `busy_timeout`, foreign keys, `secure_delete` (erased sealed blobs are zeroed).
 * - Creates the parent directory (mode 0700) and the file (mode 0600).
 * - Refuses a database whose schema is newer than this code (`store_version_unsupported`);
 *   read-only mode also refuses an older one, since it cannot migrate.
 *
 * @param path a file path, or `:memory:`.
 * @example
 * const store = openSqliteStore('.nexus/nexus.db');
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  const memory = path === ':memory:';
  const readonly = options.readonly === true;
  const clock = options.clock ?? Date.now;
  if (!memory && !readonly) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Pre-create with 0600: SQLite gives the -wal and -shm files the same mode.
    closeSync(openSync(path, 'a', 0o600));
  }
  const db = new Database(path, readonly ? { readonly: true, fileMustExist: true } : {});
  let schemaVersion: number;
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    if (readonly) {
      db.pragma('query_only = ON');
      schemaVersion = schemaVersionOf(db);
      if (schemaVersion > LATEST_SCHEMA_VERSION) throw tooNew(schemaVersion);
      if (schemaVersion < LATEST_SCHEMA_VERSION) {
        throw new StoreError(
          'store_version_unsupported',
          `database schema version ${schemaVersion} is older than ${LATEST_SCHEMA_VERSION}; open it read-write once to migrate`,
        );
      }
    } else {
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('secure_delete = ON');
      schemaVersion = migrate(db, clock);
      // The append-only guards are part of the schema: if someone dropped them (to edit
      // history), they come back at the next start. `audit verify` finds what was edited.
      db.exec(`
        CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
      `);
    }
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStoreImpl(db, path, schemaVersion);
}

// --- row mapping ---

const toAgent = (r: Row): AgentRow => ({
  name: str(r.name),
  roles: JSON.parse(str(r.roles)) as string[],
  disabled: num(r.disabled) === 1,
  source: str(r.source) as AgentRow['source'],
  createdAt: num(r.created_at),
});

const toEnrollment = (r: Row): EnrollmentTokenRow => ({
  id: str(r.id),
  agent: str(r.agent),
  tokenHash: str(r.token_hash),
  act: optStr(r.act),
  task: optStr(r.task),
  expiresAt: num(r.expires_at),
  usedAt: optNum(r.used_at),
  createdAt: num(r.created_at),
});

const toLease = (r: Row): LeaseRow => ({
  jti: str(r.jti),
  agent: str(r.agent),
  publicJwk: JSON.parse(str(r.public_jwk)) as StoredJwk,
  jkt: str(r.jkt),
  issuedAt: num(r.issued_at),
  expiresAt: num(r.expires_at),
  chainStartedAt: num(r.chain_started_at),
  parentJti: optStr(r.parent_jti),
  act: optStr(r.act),
  task: optStr(r.task),
  revokedAt: optNum(r.revoked_at),
});

const toSigningKey = (r: Row): SigningKeyRow => ({
  kid: str(r.kid),
  alg: str(r.alg) as SigningKeyRow['alg'],
  publicJwk: JSON.parse(str(r.public_jwk)) as StoredJwk,
  privateKeyEnc: str(r.private_key_enc),
  status: str(r.status) as SigningKeyRow['status'],
  createdAt: num(r.created_at),
  retiredAt: optNum(r.retired_at),
  verifyUntil: optNum(r.verify_until),
});

const toOperatorToken = (r: Row): OperatorTokenRow => ({
  id: str(r.id),
  name: str(r.name),
  tokenHash: str(r.token_hash),
  createdAt: num(r.created_at),
  revokedAt: optNum(r.revoked_at),
});

const toCredentialMeta = (r: Row): CredentialMeta => ({
  name: str(r.name),
  version: num(r.version),
  fieldNames: JSON.parse(str(r.field_names)) as string[],
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
});

const toAudit = (r: Row): AuditRow => ({
  seq: num(r.seq),
  time: num(r.time),
  kind: str(r.kind),
  requestId: str(r.request_id),
  record: str(r.record),
  prevHash: str(r.prev_hash),
  hash: str(r.hash),
  agent: optStr(r.agent),
  service: optStr(r.service),
  decision: optStr(r.decision),
});

const toCheckpoint = (r: Row): CheckpointRow => ({
  seq: num(r.seq),
  hash: str(r.hash),
  time: num(r.time),
  kid: str(r.kid),
  jws: str(r.jws),
});

class SqliteStoreImpl implements SqliteStore {
  readonly path: string;
  readonly schemaVersion: number;
  readonly #db: Db;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(db: Db, path: string, schemaVersion: number) {
    this.#db = db;
    this.path = path;
    this.schemaVersion = schemaVersion;
  }

  /** A cached prepared statement (dynamic SQL is cached per distinct text). */
  #stmt(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  #get(sql: string, ...params: unknown[]): Row | undefined {
    return this.#stmt(sql).get(...params) as Row | undefined;
  }

  #all(sql: string, ...params: unknown[]): Row[] {
    return this.#stmt(sql).all(...params) as Row[];
  }

  #run(sql: string, ...params: unknown[]): Database.RunResult {
    return this.#stmt(sql).run(...params);
  }

  /** Runs `fn` in a `BEGIN IMMEDIATE` transaction. */
  #write<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  // --- agents ---

  async upsertAgent(input: AgentUpsert): Promise<AgentRow> {
    const row = this.#get(
      `INSERT INTO agents (name, roles, disabled, source, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET
         roles = excluded.roles,
         source = excluded.source,
         disabled = CASE WHEN ? IS NULL THEN agents.disabled ELSE excluded.disabled END
       RETURNING *`,
      input.name,
      JSON.stringify(input.roles),
      input.disabled === true ? 1 : 0,
      input.source,
      input.createdAt,
      input.disabled === undefined ? null : 1,
    );
    return toAgent(row as Row);
  }

  async getAgent(name: string): Promise<AgentRow | undefined> {
    const row = this.#get('SELECT * FROM agents WHERE name = ?', name);
    return row === undefined ? undefined : toAgent(row);
  }

  async listAgents(): Promise<AgentRow[]> {
    return this.#all('SELECT * FROM agents ORDER BY name').map(toAgent);
  }

  async setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow> {
    return this.#write(() => {
      const row = this.#get(
        'UPDATE agents SET disabled = ? WHERE name = ? RETURNING *',
        disabled ? 1 : 0,
        name,
      );
      if (row === undefined) throw new NexusError('not_found', 'agent not found');
      // MUST: disabling voids the agent's outstanding enrollment tokens, in the same
      // transaction, so none of them works again after a later enable (issue 10).
      if (disabled) {
        this.#run('DELETE FROM enrollment_tokens WHERE agent = ? AND used_at IS NULL', name);
      }
      return toAgent(row);
    });
  }

  async deleteAgent(name: string, at: number): Promise<void> {
    this.#write(() => {
      const row = this.#get('SELECT source FROM agents WHERE name = ?', name);
      if (row === undefined) throw new NexusError('not_found', 'agent not found');
      if (row.source !== 'api') {
        throw new NexusError('conflict', 'agent is defined in the config file; remove it there');
      }
      this.#run(
        'UPDATE leases SET revoked_at = ? WHERE agent = ? AND revoked_at IS NULL',
        at,
        name,
      );
      // Enrollment tokens go with the agent (ON DELETE CASCADE).
      this.#run('DELETE FROM agents WHERE name = ?', name);
    });
  }

  // --- enrollment tokens ---

  async createEnrollmentToken(row: EnrollmentTokenInsert): Promise<void> {
    this.#write(() => {
      // Checked in the inserting transaction: a token is never created for an agent that a
      // concurrent disable has just disabled (its tokens are voided in that transaction).
      const agent = this.#get('SELECT disabled FROM agents WHERE name = ?', row.agent);
      if (agent === undefined)
        throw new NexusError('not_found', 'enrollment token refers to an unknown agent');
      if (agent.disabled === 1) throw new NexusError('agent_disabled');
      try {
        this.#run(
          `INSERT INTO enrollment_tokens (id, agent, token_hash, act, task, expires_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
          row.id,
          row.agent,
          row.tokenHash,
          nul(row.act),
          nul(row.task),
          row.expiresAt,
          row.createdAt,
        );
      } catch (error) {
        throw mapError(error, 'enrollment token');
      }
    });
  }

  async consumeEnrollmentToken(
    tokenHash: string,
    now: number,
  ): Promise<EnrollmentTokenRow | undefined> {
    // One statement: the check and the mark are atomic across connections.
    const row = this.#get(
      `UPDATE enrollment_tokens SET used_at = ?
       WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?
       RETURNING *`,
      now,
      tokenHash,
      now,
    );
    return row === undefined ? undefined : toEnrollment(row);
  }

  // --- leases ---

  async insertLease(row: LeaseInsert): Promise<void> {
    this.#write(() => {
      if (this.#get('SELECT 1 FROM agents WHERE name = ?', row.agent) === undefined) {
        throw new NexusError('not_found', 'lease refers to an unknown agent');
      }
      try {
        this.#run(
          `INSERT INTO leases (jti, agent, public_jwk, jkt, issued_at, expires_at,
             chain_started_at, parent_jti, act, task)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
        );
      } catch (error) {
        throw mapError(error, 'lease');
      }
    });
  }

  async getLease(jti: string): Promise<LeaseRow | undefined> {
    const row = this.#get('SELECT * FROM leases WHERE jti = ?', jti);
    return row === undefined ? undefined : toLease(row);
  }

  async listLeases(filter: LeaseFilter = {}): Promise<LeaseRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.agent !== undefined) {
      where.push('l.agent = ?');
      params.push(filter.agent);
    }
    if (filter.activeAt !== undefined) {
      where.push(
        `l.revoked_at IS NULL AND l.expires_at > ? AND NOT EXISTS (
           SELECT 1 FROM revocation_epochs e
           WHERE l.issued_at <= e.at AND (e.kind = 'all' OR (e.kind = 'agent' AND e.agent = l.agent)))`,
      );
      params.push(filter.activeAt);
    }
    const sql = `SELECT l.* FROM leases l ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY l.issued_at DESC, l.jti LIMIT ?`;
    return this.#all(sql, ...params, clampLimit(filter.limit, 100)).map(toLease);
  }

  async revokeLease(jti: string, at: number): Promise<LeaseRow> {
    const row = this.#get(
      'UPDATE leases SET revoked_at = coalesce(revoked_at, ?) WHERE jti = ? RETURNING *',
      at,
      jti,
    );
    if (row === undefined) throw new NexusError('not_found', 'lease not found');
    return toLease(row);
  }

  async revokeLeaseChain(jti: string, at: number): Promise<string[]> {
    return this.#write(() => {
      const start = this.#get('SELECT agent, parent_jti FROM leases WHERE jti = ?', jti);
      if (start === undefined) throw new NexusError('not_found', 'lease not found');
      const agent = str(start.agent);
      // Up to the first lease of the chain (a visited set stops a corrupt cycle).
      let root = jti;
      const seen = new Set([jti]);
      for (let parent = start.parent_jti; typeof parent === 'string' && !seen.has(parent);) {
        const row = this.#get(
          'SELECT parent_jti FROM leases WHERE jti = ? AND agent = ?',
          parent,
          agent,
        );
        if (row === undefined) break;
        seen.add(parent);
        root = parent;
        parent = row.parent_jti;
      }
      // Down from it: UNION (not UNION ALL) visits each jti once, so a cycle ends too.
      const chain = this.#all(
        `WITH RECURSIVE chain(jti) AS (
           SELECT ?
           UNION
           SELECT l.jti FROM leases l JOIN chain ON l.parent_jti = chain.jti WHERE l.agent = ?
         )
         SELECT chain.jti FROM chain JOIN leases ON leases.jti = chain.jti
         ORDER BY leases.issued_at, chain.jti`,
        root,
        agent,
      ).map((r) => str(r.jti));
      const update = 'UPDATE leases SET revoked_at = coalesce(revoked_at, ?) WHERE jti = ?';
      for (const id of chain) this.#run(update, at, id);
      return chain;
    });
  }

  async listRevokedLeaseIds(expiresAfter: number): Promise<string[]> {
    return this.#all(
      'SELECT jti FROM leases WHERE revoked_at IS NOT NULL AND expires_at > ?',
      expiresAfter,
    ).map((r) => str(r.jti));
  }

  async setRevocationEpoch(scope: RevocationScope, at: number): Promise<void> {
    const [kind, agent] = scope === 'all' ? ['all', ''] : ['agent', scope.agent];
    this.#run(
      `INSERT INTO revocation_epochs (kind, agent, at) VALUES (?, ?, ?)
       ON CONFLICT (kind, agent) DO UPDATE SET at = max(at, excluded.at)`,
      kind,
      agent,
      at,
    );
  }

  async getRevocationEpochs(): Promise<RevocationEpochs> {
    const epochs: RevocationEpochs = { agents: {} };
    for (const r of this.#all('SELECT kind, agent, at FROM revocation_epochs')) {
      if (r.kind === 'all') epochs.all = num(r.at);
      else epochs.agents[str(r.agent)] = num(r.at);
    }
    return epochs;
  }

  // --- signing keys ---

  async insertSigningKey(row: SigningKeyInsert): Promise<void> {
    try {
      this.#run(
        `INSERT INTO signing_keys (kid, alg, public_jwk, private_key_enc, status, created_at)
         VALUES (?, ?, ?, ?, 'active', ?)`,
        row.kid,
        row.alg,
        JSON.stringify(row.publicJwk),
        row.privateKeyEnc,
        row.createdAt,
      );
    } catch (error) {
      throw mapError(error, 'signing key');
    }
  }

  async listSigningKeys(): Promise<SigningKeyRow[]> {
    return this.#all('SELECT * FROM signing_keys ORDER BY created_at, kid').map(toSigningKey);
  }

  async retireSigningKey(kid: string, at: number, verifyUntil: number): Promise<SigningKeyRow> {
    const row = this.#get(
      `UPDATE signing_keys SET status = 'retired', retired_at = ?, verify_until = ?
       WHERE kid = ? RETURNING *`,
      at,
      verifyUntil,
      kid,
    );
    if (row === undefined) throw new NexusError('not_found', 'signing key not found');
    return toSigningKey(row);
  }

  // --- operator tokens ---

  async insertOperatorToken(row: OperatorTokenInsert): Promise<void> {
    try {
      this.#run(
        'INSERT INTO operator_tokens (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)',
        row.id,
        row.name,
        row.tokenHash,
        row.createdAt,
      );
    } catch (error) {
      throw mapError(error, 'operator token');
    }
  }

  async findOperatorTokenByHash(tokenHash: string): Promise<OperatorTokenRow | undefined> {
    const row = this.#get(
      'SELECT * FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL',
      tokenHash,
    );
    return row === undefined ? undefined : toOperatorToken(row);
  }

  async listOperatorTokens(): Promise<OperatorTokenRow[]> {
    return this.#all('SELECT * FROM operator_tokens ORDER BY created_at, id').map(toOperatorToken);
  }

  async revokeOperatorToken(id: string, at: number): Promise<OperatorTokenRow> {
    const row = this.#get(
      'UPDATE operator_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING *',
      at,
      id,
    );
    if (row === undefined) throw new NexusError('not_found', 'operator token not found');
    return toOperatorToken(row);
  }

  // --- credentials ---

  async putCredentialVersion(
    name: string,
    input: CredentialVersionInput,
  ): Promise<CredentialVersionRow> {
    return this.#write(() => {
      const existing = this.#get(
        'SELECT last_version, deleted_at FROM credentials WHERE name = ?',
        name,
      );
      let version: number;
      if (existing === undefined) {
        version = 1;
        this.#run(
          'INSERT INTO credentials (name, last_version, created_at) VALUES (?, 1, ?)',
          name,
          input.createdAt,
        );
      } else {
        version = num(existing.last_version) + 1;
        // A name set again after a delete starts a new life (createdAt), not a new numbering.
        this.#run(
          `UPDATE credentials SET last_version = ?,
             created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE ? END,
             deleted_at = NULL
           WHERE name = ?`,
          version,
          input.createdAt,
          name,
        );
      }
      const sealed = input.seal(version);
      // Only the current version keeps a sealed payload: superseded values are erased.
      this.#run(
        'UPDATE credential_versions SET sealed = NULL WHERE name = ? AND sealed IS NOT NULL',
        name,
      );
      this.#run(
        `INSERT INTO credential_versions (name, version, field_names, sealed, created_at)
         VALUES (?, ?, ?, ?, ?)`,
        name,
        version,
        JSON.stringify(input.fieldNames),
        sealed,
        input.createdAt,
      );
      return { name, version, fieldNames: [...input.fieldNames], createdAt: input.createdAt };
    });
  }

  async getCredential(name: string): Promise<CredentialRow | undefined> {
    const row = this.#get(
      `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at, v.sealed
       FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
       WHERE c.name = ? AND c.deleted_at IS NULL AND v.sealed IS NOT NULL`,
      name,
    );
    return row === undefined ? undefined : { ...toCredentialMeta(row), sealed: str(row.sealed) };
  }

  async listCredentials(): Promise<CredentialMeta[]> {
    return this.#all(
      `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at
       FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
       WHERE c.deleted_at IS NULL
       ORDER BY c.name`,
    ).map(toCredentialMeta);
  }

  async deleteCredential(name: string, at: number): Promise<void> {
    this.#write(() => {
      const info = this.#run(
        'UPDATE credentials SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL',
        at,
        name,
      );
      if (info.changes === 0) throw new NexusError('not_found', 'credential not found');
      this.#run('UPDATE credential_versions SET sealed = NULL WHERE name = ?', name);
    });
  }

  async listAllSealed(): Promise<SealedRecord[]> {
    const records: SealedRecord[] = [];
    for (const r of this.#all(
      'SELECT name, version, sealed FROM credential_versions WHERE sealed IS NOT NULL ORDER BY name, version',
    )) {
      records.push({
        ref: { kind: 'credential', name: str(r.name), version: num(r.version) },
        sealed: str(r.sealed),
      });
    }
    for (const r of this.#all('SELECT kid, private_key_enc FROM signing_keys ORDER BY kid')) {
      records.push({
        ref: { kind: 'signing_key', kid: str(r.kid) },
        sealed: str(r.private_key_enc),
      });
    }
    return records;
  }

  async replaceSealed(replacements: SealedReplacement[]): Promise<number> {
    if (replacements.length === 0) return 0;
    return this.#write(() => {
      let changed = 0;
      for (const { ref, previous, sealed } of replacements) {
        const info =
          ref.kind === 'credential'
            ? this.#run(
                'UPDATE credential_versions SET sealed = ? WHERE name = ? AND version = ? AND sealed = ?',
                sealed,
                ref.name,
                ref.version,
                previous,
              )
            : this.#run(
                'UPDATE signing_keys SET private_key_enc = ? WHERE kid = ? AND private_key_enc = ?',
                sealed,
                ref.kid,
                previous,
              );
        changed += info.changes;
      }
      return changed;
    });
  }

  // --- audit ---

  async appendAudit(rows: AuditAppend[]): Promise<number[]> {
    if (rows.length === 0) return [];
    return this.#write(() => {
      const last = this.#get('SELECT hash FROM audit ORDER BY seq DESC LIMIT 1');
      let previous = last === undefined ? undefined : str(last.hash);
      const seqs: number[] = [];
      for (const row of rows) {
        if (previous !== undefined && row.prevHash !== previous) {
          // Another writer appended first: the caller's chain forked. Nothing is written.
          throw new NexusError('conflict', 'audit record does not link to the last stored record');
        }
        const index = auditIndexFields(row);
        const info = this.#run(
          `INSERT INTO audit (time, kind, request_id, agent, service, decision, record, prev_hash, hash)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          row.time,
          row.kind,
          row.requestId,
          nul(index.agent),
          nul(index.service),
          nul(index.decision),
          row.record,
          row.prevHash,
          row.hash,
        );
        seqs.push(Number(info.lastInsertRowid));
        previous = row.hash;
      }
      return seqs;
    });
  }

  async lastAudit(): Promise<AuditRow | undefined> {
    const row = this.#get('SELECT * FROM audit ORDER BY seq DESC LIMIT 1');
    return row === undefined ? undefined : toAudit(row);
  }

  async readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]> {
    return this.#all(
      'SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?',
      options.fromSeq,
      clampLimit(options.limit, 1000),
    ).map(toAudit);
  }

  async queryAudit(filter: AuditQuery): Promise<AuditRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const eq = (column: string, value: string | undefined): void => {
      if (value === undefined) return;
      where.push(`${column} = ?`);
      params.push(value);
    };
    eq('agent', filter.agent === undefined ? undefined : auditAgentKey(filter.agent));
    eq('service', filter.service);
    eq('decision', filter.decision);
    eq('request_id', filter.requestId);
    eq('kind', filter.kind);
    if (filter.since !== undefined) {
      where.push('time >= ?');
      params.push(filter.since);
    }
    if (filter.until !== undefined) {
      where.push('time < ?');
      params.push(filter.until);
    }
    const order = filter.order === 'asc' ? 'ASC' : 'DESC';
    const sql = `SELECT * FROM audit ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY seq ${order} LIMIT ?`;
    return this.#all(sql, ...params, clampLimit(filter.limit, 100)).map(toAudit);
  }

  async countAudit(): Promise<number> {
    return num((this.#get('SELECT count(*) AS n FROM audit') as Row).n);
  }

  async insertCheckpoint(row: CheckpointRow): Promise<void> {
    try {
      this.#run(
        'INSERT INTO audit_checkpoints (seq, hash, time, kid, jws) VALUES (?, ?, ?, ?, ?)',
        row.seq,
        row.hash,
        row.time,
        row.kid,
        row.jws,
      );
    } catch (error) {
      throw mapError(error, 'checkpoint');
    }
  }

  async listCheckpoints(): Promise<CheckpointRow[]> {
    return this.#all('SELECT * FROM audit_checkpoints ORDER BY seq').map(toCheckpoint);
  }

  async lastCheckpoint(): Promise<CheckpointRow | undefined> {
    const row = this.#get('SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1');
    return row === undefined ? undefined : toCheckpoint(row);
  }

  // --- meta ---

  async getMeta(key: string): Promise<string | undefined> {
    const row = this.#get('SELECT value FROM meta WHERE key = ?', key);
    return row === undefined ? undefined : str(row.value);
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.#run(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      key,
      value,
    );
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    this.#statements.clear();
    this.#db.close();
  }
}
