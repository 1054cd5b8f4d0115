// The embedded SQLite backend of `Store` (better-sqlite3, WAL, synchronous=FULL). Its
// queries are the shared ones (queries.ts, Kysely-built); this file runs them.
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
import { type Row, optNum, str } from './rows.js';
import { FileGuard, fileIdentity, type FileIdentity, type GuardedFile } from './file-guard.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations/all.js';
import type { NonceClaims } from '../audit/sink.js';
import {
  Dialect,
  KyselyStore,
  notLinked,
  replayStatements,
  row,
  type Plan,
  type PlanKind,
} from './queries.js';
import type { AuditAppend, Store } from './store.js';

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
  /**
   * SQLite's `wal_autocheckpoint` for this connection, in WAL pages (SQLite's default
   * 1000; 0: never). A commit that finds the WAL this long checkpoints it then and there,
   * on this connection's thread; the audit thread sets it high and leaves checkpoints to
   * its checkpointer thread (`audit/checkpointer-thread.ts`).
   */
  walAutocheckpoint?: number;
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
  /**
   * Copies the WAL's committed pages into the database file without waiting for any
   * reader or writer (`wal_checkpoint(PASSIVE)`), then checks the store's files; `log`
   * and `checkpointed` are WAL pages.
   */
  checkpointWal(): Promise<{ busy: boolean; log: number; checkpointed: number }>;
}

type Db = Database.Database;

/** Expired replay records deleted per sweep, at most (`#claimNonces`). */
const NONCE_SWEEP_BATCH = 2000;

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
      if (options.walAutocheckpoint !== undefined && !memory) {
        db.pragma(`wal_autocheckpoint = ${Math.max(0, Math.floor(options.walAutocheckpoint))}`);
      }
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

interface ImplOptions {
  readonly files: StoreFiles | undefined;
  readonly guard: FileGuard | undefined;
  readonly busyTimeoutMs: number;
  readonly blockOnBusy: boolean;
  readonly onFault: ((error: Error) => void) | undefined;
}

class SqliteStoreImpl extends KyselyStore implements SqliteStore {
  readonly path: string;
  readonly schemaVersion: number;
  readonly files: StoreFiles | undefined;
  readonly #db: Db;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #options: ImplOptions;
  /** Set once the files were found deleted or replaced: every later call fails with it. */
  #fault: Error | undefined;

  constructor(db: Db, path: string, schemaVersion: number, options: ImplOptions) {
    super(new Dialect('sqlite'));
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

  /** A cached prepared statement (dynamic SQL is cached per distinct text). */
  #stmt(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  /** Runs `fn` in a `BEGIN IMMEDIATE` transaction. */
  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  /**
   * Runs a plan synchronously, start to end, on this connection: in a `BEGIN IMMEDIATE`
   * transaction when `kind.tx`, inside `#op` (busy retry, file check). A retry runs a
   * fresh plan. Constraint violations become `conflict` / `not_found`.
   */
  protected execute<T>(kind: PlanKind, body: () => Plan<T>): Promise<T> {
    return this.#op(() => {
      try {
        return kind.tx ? this.#tx(() => this.#drive(body())) : this.#drive(body());
      } catch (error) {
        throw mapError(error, kind.what);
      }
    }, kind.write);
  }

  /** Runs each statement of `plan` through a cached prepared statement. */
  #drive<T>(plan: Plan<T>): T {
    let next = plan.next();
    while (next.done !== true) {
      const { statement, want } = next.value;
      const s = this.#stmt(statement.sql);
      const params = statement.parameters as unknown[];
      next = plan.next(
        want === 'rows'
          ? s.all(...params)
          : want === 'row'
            ? s.get(...params)
            : s.run(...params).changes,
      );
    }
    return next.value;
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
    return this.execute({ write: true, tx: true, what: 'audit record' }, () =>
      this.#appendLinkedPlan(build, claims),
    );
  }

  *#appendLinkedPlan(
    build: Parameters<SqliteStore['appendAuditLinked']>[0],
    claims: NonceClaims | undefined,
  ): Plan<number[]> {
    const refused = claims === undefined ? [] : this.#claimNonces(claims);
    const last = yield* this.auditHead();
    // `build` is synchronous: it reads through the driver directly (same transaction).
    const rows = build(
      last,
      (seq) => {
        const r = this.#drive(row(this.audit.hashAt.bind(seq)));
        return r === undefined ? undefined : str(r.hash);
      },
      refused,
    );
    let seq = last?.seq ?? 0;
    let previous = last?.hash;
    for (const r of rows) {
      if (r.seq !== ++seq || (previous !== undefined && r.prevHash !== previous)) {
        throw notLinked();
      }
      previous = r.hash;
    }
    yield* this.insertAudit(rows, (last?.seq ?? 0) + 1);
    return rows.map((r) => r.seq);
  }

  /** The replay-record statements (`--workers`: the audit thread's claims). */
  readonly #replay = replayStatements('sqlite');
  /** When the next sweep of expired replay records may run (ms). */
  #nextNonceSweep = 0;

  /**
   * Inserts the claims' replay records (inside the caller's transaction); true at i: the
   * i-th claim is exclusive and its pair has a live record (a replay). Expired records are
   * deleted first, a bounded number at most once a second, so that a backlog never holds
   * the write lock for long (a full sweep comes back sooner).
   */
  #claimNonces({ claims, now }: NonceClaims): boolean[] {
    if (now >= this.#nextNonceSweep) {
      const s = this.#replay.sweepSome.bind(now, NONCE_SWEEP_BATCH);
      const swept = this.#stmt(s.sql).run(...(s.parameters as unknown[])).changes;
      this.#nextNonceSweep = now + (swept === NONCE_SWEEP_BATCH ? 50 : 1000);
    }
    const record = this.#stmt(this.#replay.record.sql);
    return claims.map((claim) => {
      if (claim === undefined) return false;
      const s = this.#replay.record.bind(claim.key, claim.forgetAt, now);
      const changes = record.run(...(s.parameters as unknown[])).changes;
      return changes === 0 && claim.exclusive;
    });
  }

  checkpointWal(): Promise<{ busy: boolean; log: number; checkpointed: number }> {
    return this.#op(() => {
      const [r] = this.#db.pragma('wal_checkpoint(PASSIVE)') as {
        busy: number;
        log: number;
        checkpointed: number;
      }[];
      return { busy: r?.busy === 1, log: r?.log ?? 0, checkpointed: r?.checkpointed ?? 0 };
    }, true);
  }

  async close(): Promise<void> {
    if (!this.#db.open) return;
    this.#statements.clear();
    this.#db.close();
  }
}
