// The embedded SQLite backend of `Store` (better-sqlite3, WAL, synchronous=FULL).
// better-sqlite3 is synchronous: each method runs one statement or transaction to
// completion, and every read-modify-write runs in a `BEGIN IMMEDIATE` transaction so
// several processes on one file stay correct (the write lock is taken up front). A lock
// held by another connection is never waited for on the calling thread: the operation is
// retried asynchronously, then fails with `store_busy` (issue 10).
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { NexusError } from '@nexus-proxy/protocol';
import Database from 'better-sqlite3';
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
import { FileGuard, fileIdentity, type FileIdentity, type GuardedFile } from './file-guard.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations/all.js';
import type { NonceClaims } from '../audit/sink.js';
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

/** Options of `openSqliteStore`. */
export interface SqliteStoreOptions {
  /** Open without writing: no migration, no pragma that writes; the file must exist. */
  readonly?: boolean;
  /**
   * Create the file (and its directory, mode 0700) when it is missing. Default true.
   * `nexus up` passes false: only `nexus init` creates a store, so a store that was
   * deleted or moved is reported (`store_missing`), never silently replaced by an empty one.
   */
  create?: boolean;
  /**
   * Apply pending migrations and restore the append-only triggers. Default true. With
   * false the schema must already be the latest (the audit worker's connection, opened
   * after the main one migrated).
   */
  migrate?: boolean;
  /**
   * How long an operation may wait for another connection's lock, in ms; past it the
   * operation fails with `store_busy` and changes nothing. Default 5000.
   */
  busyTimeoutMs?: number;
  /**
   * Wait for a lock inside SQLite (blocking the thread) instead of retrying
   * asynchronously; a lock still held after `busyTimeoutMs` surfaces as SQLite's own
   * `SQLITE_BUSY`. For a worker thread only: the main thread MUST NOT block on the lock.
   */
  blockOnBusy?: boolean;
  /** The store's files must still be these (the audit worker gets the main connection's). */
  expectFiles?: StoreFiles;
  /** The node lock (`node-lock.ts`): guarded like the store's own files. */
  lock?: { readonly path: string; readonly identity: FileIdentity };
  /** Called once when the store finds its files deleted or replaced (then refuses everything). */
  onFault?: (error: Error) => void;
  /** Clock for `schema_migrations.applied_at`. Default `Date.now`. */
  clock?: () => number;
}

/** The identities of a file store's database and WAL files when it was opened. */
export interface StoreFiles {
  readonly db: FileIdentity;
  readonly wal: FileIdentity;
}

/** A `Store` on SQLite, with the file it uses. */
export interface SqliteStore extends Store {
  /** The database path (`:memory:` for an in-memory store). */
  readonly path: string;
  /** The schema version of the open database. */
  readonly schemaVersion: number;
  /**
   * The files this store writes, as it found them at open time; undefined for an
   * in-memory or read-only store. After every write the store checks that its paths
   * still name these files, and fails closed with `store_unavailable` once they do not.
   */
  readonly files: StoreFiles | undefined;
  /** See {@link SqliteStoreImpl.appendAuditLinked} (the audit thread's append). */
  appendAuditLinked(
    build: (
      last: { seq: number; hash: string } | undefined,
      hashAt: (seq: number) => string | undefined,
      refused: readonly boolean[],
    ) => (AuditAppend & { seq: number })[],
    claims?: NonceClaims,
  ): Promise<number[]>;
}

type Db = Database.Database;

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
 * Opens a SQLite store and brings its schema up to date.
 *
 * - WAL journal, `synchronous=FULL` (a resolved `appendAudit` is on disk), foreign keys,
 *   `secure_delete` (erased sealed blobs are zeroed).
 * - Creates the parent directory (mode 0700) and the file (mode 0600) only when `create`
 *   (the default) and the file is missing; otherwise a missing file is `store_missing`.
 * - Never waits on a lock on the calling thread after opening (`busyTimeoutMs`,
 *   `blockOnBusy`): operations retry asynchronously, then fail with `store_busy`.
 * - Refuses a database whose schema is newer than this code (`store_version_unsupported`);
 *   read-only mode (and `migrate: false`) also refuses an older one, since it cannot migrate.
 *
 * @param path a file path, or `:memory:`.
 * @example
 * const store = openSqliteStore('.nexus/nexus.db');
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  const memory = path === ':memory:';
  const readonly = options.readonly === true;
  const migrating = !readonly && options.migrate !== false;
  const clock = options.clock ?? Date.now;
  const busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000));
  if (!memory && fileIdentity(path) === undefined) {
    if (readonly || options.create === false) {
      throw new StoreError(
        'store_missing',
        `no Nexus store at ${path}: create one with \`nexus init\`, or restore the file from a backup`,
      );
    }
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Pre-create with 0600 (SQLite gives the -wal and -shm files the same mode). 'wx' only
    // ever opens a file it creates: opening and closing an existing store file would drop
    // every POSIX lock this process's SQLite connections hold on it, and another process
    // (an operator's `sqlite3`) would then checkpoint and delete the WAL under them.
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
    }
  }
  const db = new Database(
    path,
    readonly ? { readonly: true, fileMustExist: true } : { fileMustExist: !memory },
  );
  let schemaVersion: number;
  let files: StoreFiles | undefined;
  let guard: FileGuard | undefined;
  try {
    // Opening may wait (start-up); afterwards the main thread never does (see #op).
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    if (readonly || !migrating) {
      if (readonly) db.pragma('query_only = ON');
      schemaVersion = schemaVersionOf(db);
      if (schemaVersion > LATEST_SCHEMA_VERSION) throw tooNew(schemaVersion);
      if (schemaVersion < LATEST_SCHEMA_VERSION) {
        throw new StoreError(
          'store_version_unsupported',
          `database schema version ${schemaVersion} is older than ${LATEST_SCHEMA_VERSION}; open it read-write once to migrate`,
        );
      }
    }
    if (!readonly) {
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('secure_delete = ON');
    }
    if (migrating) {
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
    if (!readonly && !memory) {
      const dbId = fileIdentity(path);
      const walId = fileIdentity(`${path}-wal`);
      if (dbId === undefined || walId === undefined) {
        throw new NexusError(
          'store_unavailable',
          'the store file or its WAL vanished while opening',
        );
      }
      files = { db: dbId, wal: walId };
      const guarded: GuardedFile[] = [
        { label: 'the store file', path, identity: options.expectFiles?.db ?? dbId },
        {
          label: "the store's WAL file",
          path: `${path}-wal`,
          identity: options.expectFiles?.wal ?? walId,
        },
      ];
      if (options.lock !== undefined) {
        guarded.push({
          label: 'the node lock file',
          path: options.lock.path,
          identity: options.lock.identity,
        });
      }
      guard = new FileGuard(guarded);
      guard.check();
    }
    db.pragma(`busy_timeout = ${options.blockOnBusy === true ? busyTimeoutMs : 0}`);
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStoreImpl(db, path, schemaVersion!, {
    files,
    guard,
    busyTimeoutMs,
    blockOnBusy: options.blockOnBusy === true,
    onFault: options.onFault,
  });
}

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- row mapping ---

interface ImplOptions {
  readonly files: StoreFiles | undefined;
  readonly guard: FileGuard | undefined;
  readonly busyTimeoutMs: number;
  readonly blockOnBusy: boolean;
  readonly onFault: ((error: Error) => void) | undefined;
}

class SqliteStoreImpl implements SqliteStore {
  readonly path: string;
  readonly schemaVersion: number;
  readonly files: StoreFiles | undefined;
  readonly #db: Db;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #options: ImplOptions;
  /** Set once the files were found deleted or replaced: every later call fails with it. */
  #fault: Error | undefined;

  constructor(db: Db, path: string, schemaVersion: number, options: ImplOptions) {
    this.#db = db;
    this.path = path;
    this.schemaVersion = schemaVersion;
    this.files = options.files;
    this.#options = options;
  }

  /** Checks the guarded files; on the first failure, latches it and tells `onFault`. */
  #checkFiles(cause?: unknown): void {
    try {
      this.#options.guard?.check(cause);
    } catch (error) {
      this.#fault = error as Error;
      this.#options.onFault?.(this.#fault);
      throw error;
    }
  }

  /**
   * Runs one synchronous operation (a statement or a transaction). When another connection
   * holds the lock, SQLite answers at once (busy_timeout 0) and the operation is retried
   * after an asynchronous back-off, so the event loop keeps serving everything else; past
   * the deadline it fails with `store_busy`. A busy operation changed nothing, so a retry
   * is safe. After a write, the files are checked: a commit into a deleted or replaced
   * file is not durable and MUST NOT be reported as done.
   */
  async #op<T>(fn: () => T, write: boolean): Promise<T> {
    const deadline = performance.now() + this.#options.busyTimeoutMs;
    let delay = 1;
    for (;;) {
      if (this.#fault !== undefined) throw this.#fault;
      let result: T;
      try {
        result = fn();
      } catch (error) {
        if (!isBusy(error)) {
          // A failed write may be the symptom of a vanished file: say so if it is.
          if (write && this.#db.open) this.#checkFiles(error);
          throw error;
        }
        if (this.#options.blockOnBusy) throw error;
        if (performance.now() >= deadline) {
          throw new NexusError('store_busy', 'the database is locked by another connection', {
            cause: error,
          });
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 50);
        continue;
      }
      if (write) this.#checkFiles();
      return result;
    }
  }

  #read<T>(fn: () => T): Promise<T> {
    return this.#op(fn, false);
  }

  #write<T>(fn: () => T): Promise<T> {
    return this.#op(fn, true);
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
  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  // --- agents ---

  upsertAgent(input: AgentUpsert): Promise<AgentRow> {
    return this.#write(() => {
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
    });
  }

  getAgent(name: string): Promise<AgentRow | undefined> {
    return this.#read(() => {
      const row = this.#get('SELECT * FROM agents WHERE name = ?', name);
      return row === undefined ? undefined : toAgent(row);
    });
  }

  listAgents(): Promise<AgentRow[]> {
    return this.#read(() => this.#all('SELECT * FROM agents ORDER BY name').map(toAgent));
  }

  setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow> {
    return this.#write(() =>
      this.#tx(() => {
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
      }),
    );
  }

  deleteAgent(name: string, at: number): Promise<void> {
    return this.#write(() => {
      this.#tx(() => {
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
    });
  }

  // --- enrollment tokens ---

  createEnrollmentToken(row: EnrollmentTokenInsert): Promise<void> {
    return this.#write(() =>
      this.#tx(() => {
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
      }),
    );
  }

  consumeEnrollmentToken(tokenHash: string, now: number): Promise<EnrollmentTokenRow | undefined> {
    return this.#write(() => {
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
    });
  }

  // --- leases ---

  insertLease(row: LeaseInsert): Promise<void> {
    return this.#write(() => {
      this.#tx(() => {
        if (this.#get('SELECT 1 FROM agents WHERE name = ?', row.agent) === undefined) {
          throw new NexusError('not_found', 'lease refers to an unknown agent');
        }
        try {
          this.#run(
            `INSERT INTO leases (jti, agent, public_jwk, jkt, issued_at, expires_at,
               chain_started_at, parent_jti, act, task, delegation)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
          );
        } catch (error) {
          throw mapError(error, 'lease');
        }
      });
    });
  }

  getLease(jti: string): Promise<LeaseRow | undefined> {
    return this.#read(() => {
      const row = this.#get('SELECT * FROM leases WHERE jti = ?', jti);
      return row === undefined ? undefined : toLease(row);
    });
  }

  listLeases(filter: LeaseFilter = {}): Promise<LeaseRow[]> {
    return this.#read(() => {
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
    });
  }

  revokeLease(jti: string, at: number): Promise<LeaseRow> {
    return this.#write(() => {
      const row = this.#get(
        'UPDATE leases SET revoked_at = coalesce(revoked_at, ?) WHERE jti = ? RETURNING *',
        at,
        jti,
      );
      if (row === undefined) throw new NexusError('not_found', 'lease not found');
      return toLease(row);
    });
  }

  revokeLeaseChain(jti: string, at: number): Promise<string[]> {
    return this.#write(() => {
      return this.#tx(() => {
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
    });
  }

  listRevokedLeaseIds(expiresAfter: number): Promise<string[]> {
    return this.#read(() =>
      this.#all(
        'SELECT jti FROM leases WHERE revoked_at IS NOT NULL AND expires_at > ?',
        expiresAfter,
      ).map((r) => str(r.jti)),
    );
  }

  setRevocationEpoch(scope: RevocationScope, at: number): Promise<void> {
    return this.#write(() => {
      const [kind, agent] = scope === 'all' ? ['all', ''] : ['agent', scope.agent];
      this.#run(
        `INSERT INTO revocation_epochs (kind, agent, at) VALUES (?, ?, ?)
         ON CONFLICT (kind, agent) DO UPDATE SET at = max(at, excluded.at)`,
        kind,
        agent,
        at,
      );
    });
  }

  getRevocationEpochs(): Promise<RevocationEpochs> {
    return this.#read(() => {
      const epochs: RevocationEpochs = { agents: {} };
      for (const r of this.#all('SELECT kind, agent, at FROM revocation_epochs')) {
        if (r.kind === 'all') epochs.all = num(r.at);
        else epochs.agents[str(r.agent)] = num(r.at);
      }
      return epochs;
    });
  }

  // --- signing keys ---

  insertSigningKey(row: SigningKeyInsert): Promise<void> {
    return this.#write(() => {
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
    });
  }

  listSigningKeys(): Promise<SigningKeyRow[]> {
    return this.#read(() =>
      this.#all('SELECT * FROM signing_keys ORDER BY created_at, kid').map(toSigningKey),
    );
  }

  retireSigningKey(kid: string, at: number, verifyUntil: number): Promise<SigningKeyRow> {
    return this.#write(() => {
      const row = this.#get(
        `UPDATE signing_keys SET status = 'retired', retired_at = ?, verify_until = ?
         WHERE kid = ? RETURNING *`,
        at,
        verifyUntil,
        kid,
      );
      if (row === undefined) throw new NexusError('not_found', 'signing key not found');
      return toSigningKey(row);
    });
  }

  // --- operator tokens ---

  insertOperatorToken(row: OperatorTokenInsert): Promise<void> {
    return this.#write(() => {
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
    });
  }

  findOperatorTokenByHash(tokenHash: string): Promise<OperatorTokenRow | undefined> {
    return this.#read(() => {
      const row = this.#get(
        'SELECT * FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL',
        tokenHash,
      );
      return row === undefined ? undefined : toOperatorToken(row);
    });
  }

  listOperatorTokens(): Promise<OperatorTokenRow[]> {
    return this.#read(() =>
      this.#all('SELECT * FROM operator_tokens ORDER BY created_at, id').map(toOperatorToken),
    );
  }

  revokeOperatorToken(id: string, at: number): Promise<OperatorTokenRow> {
    return this.#write(() => {
      const row = this.#get(
        'UPDATE operator_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING *',
        at,
        id,
      );
      if (row === undefined) throw new NexusError('not_found', 'operator token not found');
      return toOperatorToken(row);
    });
  }

  // --- credentials ---

  putCredentialVersion(name: string, input: CredentialVersionInput): Promise<CredentialVersionRow> {
    return this.#write(() => {
      return this.#tx(() => {
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
    });
  }

  getCredential(name: string): Promise<CredentialRow | undefined> {
    return this.#read(() => {
      const row = this.#get(
        `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at, v.sealed
         FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
         WHERE c.name = ? AND c.deleted_at IS NULL AND v.sealed IS NOT NULL`,
        name,
      );
      return row === undefined ? undefined : { ...toCredentialMeta(row), sealed: str(row.sealed) };
    });
  }

  listCredentials(): Promise<CredentialMeta[]> {
    return this.#read(() =>
      this.#all(
        `SELECT c.name, v.version, v.field_names, c.created_at, v.created_at AS updated_at
         FROM credentials c JOIN credential_versions v ON v.name = c.name AND v.version = c.last_version
         WHERE c.deleted_at IS NULL
         ORDER BY c.name`,
      ).map(toCredentialMeta),
    );
  }

  deleteCredential(name: string, at: number): Promise<void> {
    return this.#write(() => {
      this.#tx(() => {
        const info = this.#run(
          'UPDATE credentials SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL',
          at,
          name,
        );
        if (info.changes === 0) throw new NexusError('not_found', 'credential not found');
        this.#run('UPDATE credential_versions SET sealed = NULL WHERE name = ?', name);
      });
    });
  }

  listAllSealed(): Promise<SealedRecord[]> {
    return this.#read(() => {
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
    });
  }

  replaceSealed(replacements: SealedReplacement[]): Promise<number> {
    return this.#write(() => {
      if (replacements.length === 0) return 0;
      return this.#tx(() => {
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
    });
  }

  // --- audit ---

  appendAudit(rows: AuditAppend[]): Promise<number[]> {
    return this.#write(() => {
      if (rows.length === 0) return [];
      return this.#tx(() => {
        const last = this.#get('SELECT hash FROM audit ORDER BY seq DESC LIMIT 1');
        let previous = last === undefined ? undefined : str(last.hash);
        const seqs: number[] = [];
        for (const row of rows) {
          if (previous !== undefined && row.prevHash !== previous) {
            // Another writer appended first: the caller's chain forked. Nothing is written.
            throw new NexusError(
              'conflict',
              'audit record does not link to the last stored record',
            );
          }
          const info = this.#insertAudit(row);
          seqs.push(Number(info.lastInsertRowid));
          previous = row.hash;
        }
        return seqs;
      });
    });
  }

  /**
   * Appends audit rows that `build` makes from the chain's last row (undefined: empty),
   * inside the write transaction (`BEGIN IMMEDIATE`): the head is read and extended under
   * the write lock, so several writers on one file (each with its own connection) never
   * fork the chain and are never refused for a stale head. `build` runs synchronously in
   * the transaction, MUST return rows whose seqs follow `last` and whose first `prevHash`
   * is its hash (checked), and may read an earlier row's hash with `hashAt`.
   * Resolves the rows' seqs.
   *
   * `claims` (`nexus up --workers`, issue 14 step 4): each claim's (lease, nonce) record is
   * inserted into `replay_nonces` first, in the same transaction; `refused[i]` tells
   * `build` that the i-th record's exclusive claim met a live record (a replay), and
   * `build` leaves that record out. Expired replay records are deleted here too, a bounded
   * number at most once a second.
   */
  appendAuditLinked(
    build: (
      last: { seq: number; hash: string } | undefined,
      hashAt: (seq: number) => string | undefined,
      refused: readonly boolean[],
    ) => (AuditAppend & { seq: number })[],
    claims?: NonceClaims,
  ): Promise<number[]> {
    return this.#write(() =>
      this.#tx(() => {
        const refused = claims === undefined ? [] : this.#claimNonces(claims);
        const row = this.#get('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
        const last = row === undefined ? undefined : { seq: num(row.seq), hash: str(row.hash) };
        const rows = build(
          last,
          (seq) => {
            const r = this.#get('SELECT hash FROM audit WHERE seq = ?', seq);
            return r === undefined ? undefined : str(r.hash);
          },
          refused,
        );
        let seq = last?.seq ?? 0;
        let previous = last?.hash;
        for (const r of rows) {
          if (r.seq !== ++seq || (previous !== undefined && r.prevHash !== previous)) {
            throw new NexusError(
              'conflict',
              'audit record does not link to the last stored record',
            );
          }
          this.#insertAudit(r, seq);
          previous = r.hash;
        }
        return rows.map((r) => r.seq);
      }),
    );
  }

  /** When the next sweep of expired replay records may run (ms). */
  #nextNonceSweep = 0;

  /**
   * Inserts the claims' replay records (inside the caller's transaction); true at i: the
   * i-th claim is exclusive and its pair has a live record (a replay).
   */
  #claimNonces({ claims, now }: NonceClaims): boolean[] {
    if (now >= this.#nextNonceSweep) {
      // Bounded, so that a backlog never holds the write lock for long; a full sweep comes
      // back sooner.
      const swept = this.#run(
        'DELETE FROM replay_nonces WHERE rowid IN (SELECT rowid FROM replay_nonces WHERE forget_at <= ? LIMIT 2000)',
        now,
      ).changes;
      this.#nextNonceSweep = now + (swept === 2000 ? 50 : 1000);
    }
    return claims.map((claim) => {
      if (claim === undefined) return false;
      // A record past its time that no sweep has removed yet is taken over, as the
      // in-memory cache would have forgotten it; a live one is left as it is.
      const changes = this.#run(
        `INSERT INTO replay_nonces (key, forget_at) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET forget_at = excluded.forget_at
         WHERE replay_nonces.forget_at <= ?`,
        claim.key,
        claim.forgetAt,
        now,
      ).changes;
      return changes === 0 && claim.exclusive;
    });
  }

  #insertAudit(row: AuditAppend, seq?: number): Database.RunResult {
    const index = auditIndexFields(row);
    return this.#run(
      `INSERT INTO audit (seq, time, kind, request_id, agent, service, decision, record, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      seq ?? null,
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
  }

  lastAudit(): Promise<AuditRow | undefined> {
    return this.#read(() => {
      const row = this.#get('SELECT * FROM audit ORDER BY seq DESC LIMIT 1');
      return row === undefined ? undefined : toAudit(row);
    });
  }

  readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]> {
    return this.#read(() =>
      this.#all(
        'SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?',
        options.fromSeq,
        clampLimit(options.limit, 1000),
      ).map(toAudit),
    );
  }

  queryAudit(filter: AuditQuery): Promise<AuditRow[]> {
    return this.#read(() => {
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
    });
  }

  countAudit(): Promise<number> {
    return this.#read(() => num((this.#get('SELECT count(*) AS n FROM audit') as Row).n));
  }

  insertCheckpoint(row: CheckpointRow): Promise<void> {
    return this.#write(() => {
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
    });
  }

  listCheckpoints(): Promise<CheckpointRow[]> {
    return this.#read(() =>
      this.#all('SELECT * FROM audit_checkpoints ORDER BY seq').map(toCheckpoint),
    );
  }

  lastCheckpoint(): Promise<CheckpointRow | undefined> {
    return this.#read(() => {
      const row = this.#get('SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1');
      return row === undefined ? undefined : toCheckpoint(row);
    });
  }

  // --- pending OAuth links ---

  putOAuthPending(row: OAuthPendingRow, now: number): Promise<void> {
    return this.#write(() => {
      this.#run('DELETE FROM oauth_pending WHERE expires_at <= ?', now);
      try {
        this.#run(
          'INSERT INTO oauth_pending (state_hash, service, sealed, expires_at) VALUES (?, ?, ?, ?)',
          row.stateHash,
          row.service,
          row.sealed,
          row.expiresAt,
        );
      } catch (error) {
        throw mapError(error, 'pending link');
      }
    });
  }

  peekOAuthPending(stateHash: string, now: number): Promise<string | undefined> {
    return this.#read(() => {
      const row = this.#get(
        'SELECT service FROM oauth_pending WHERE state_hash = ? AND expires_at > ?',
        stateHash,
        now,
      );
      return row === undefined ? undefined : str(row.service);
    });
  }

  takeOAuthPending(stateHash: string, now: number): Promise<OAuthPendingRow | undefined> {
    return this.#write(() => {
      const row = this.#get(
        'DELETE FROM oauth_pending WHERE state_hash = ? RETURNING *',
        stateHash,
      );
      return row === undefined ? undefined : pendingRow(row, now);
    });
  }

  // --- meta ---

  getMeta(key: string): Promise<string | undefined> {
    return this.#read(() => {
      const row = this.#get('SELECT value FROM meta WHERE key = ?', key);
      return row === undefined ? undefined : str(row.value);
    });
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.#write(() => {
      this.#run(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
        key,
        value,
      );
    });
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    this.#statements.clear();
    this.#db.close();
  }
}
