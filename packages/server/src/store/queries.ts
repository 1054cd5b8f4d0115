// The one query layer of both stores (issue 13): every `Store` method's queries are
// written here ONCE, with Kysely, and run by the SQLite store (sqlite.ts) and the
// PostgreSQL store (postgres.ts).
//
// How it runs (chosen over Kysely's own SqliteDialect/PostgresDialect executors):
// Kysely is used as a typed query BUILDER only, on a `DummyDriver` with each dialect's
// adapter and query compiler; nothing here touches a connection. A method is a plan: a
// generator that yields compiled statements ({sql, parameters}) and receives their
// results. The SQLite store drives a plan synchronously through cached better-sqlite3
// prepared statements, inside its busy-retry `#op` and a `BEGIN IMMEDIATE` transaction
// (Kysely's SqliteDialect is async per statement: a transaction would span event-loop
// turns, and another operation could run on the connection in the middle of it). The
// PostgreSQL store drives the same plan asynchronously through `pg`, on one pooled
// connection when it is a transaction. So both stores run one query text source, and the
// SQLite hot paths stay synchronous: the audit thread's append uses `Template`s, compiled
// once, so a request pays no query building (docs/performance.md).
//
// Dialect differences, each one small hook below (`Dialect`):
// - booleans: SQLite has none (INTEGER 0/1, and better-sqlite3 cannot bind `true`);
// - text order: PostgreSQL collations are locale-aware, `COLLATE "C"` makes them byte order
//   as SQLite's BINARY;
// - row locks: PostgreSQL transactions lock the rows they read (`FOR SHARE`/`FOR UPDATE`,
//   READ COMMITTED); SQLite's `BEGIN IMMEDIATE` holds the database write lock already;
// - the audit log: PostgreSQL keeps one chain per node process (a `chain` column, and a
//   bulk `unnest` insert); SQLite one chain (a cached single-row insert per record).
// Shared as is: upserts (`ON CONFLICT ... DO UPDATE`), `RETURNING`, JSON as TEXT, and int8
// read back as strings by `pg` (rows.ts reads every number with `Number()`).
// Migrations stay per-dialect SQL (migrations/): DDL differs too much (STRICT tables,
// triggers, types) for a schema builder to help.
import { NexusError } from '@nexus-proxy/protocol';
import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  sql,
  type Compilable,
  type Expression,
  type RawBuilder,
} from 'kysely';
import {
  type Row,
  num,
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
  toHeldApproval,
} from './rows.js';
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
  type HeldApprovalRow,
  type HeldDecision,
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

// --- schema (migrations/ create it; column names are the rows.ts mappers' keys) ---

/** Times are milliseconds (INTEGER / BIGINT); JSON is TEXT; booleans see `Dialect.bool`. */
export interface Database {
  agents: {
    name: string;
    roles: string;
    disabled: number | boolean;
    source: string;
    created_at: number;
  };
  enrollment_tokens: {
    id: string;
    agent: string;
    token_hash: string;
    act: string | null;
    task: string | null;
    expires_at: number;
    used_at: number | null;
    created_at: number;
  };
  leases: {
    jti: string;
    agent: string;
    public_jwk: string;
    jkt: string;
    issued_at: number;
    expires_at: number;
    chain_started_at: number;
    parent_jti: string | null;
    act: string | null;
    task: string | null;
    delegation: string | null;
    revoked_at: number | null;
  };
  revocation_epochs: { kind: 'all' | 'agent'; agent: string; at: number };
  signing_keys: {
    kid: string;
    alg: string;
    public_jwk: string;
    private_key_enc: string;
    status: 'active' | 'retired';
    created_at: number;
    retired_at: number | null;
    verify_until: number | null;
  };
  operator_tokens: {
    id: string;
    name: string;
    token_hash: string;
    created_at: number;
    revoked_at: number | null;
  };
  credentials: {
    name: string;
    last_version: number;
    created_at: number;
    deleted_at: number | null;
  };
  credential_versions: {
    name: string;
    version: number;
    field_names: string;
    sealed: string | null;
    created_at: number;
  };
  audit: {
    /** PostgreSQL only: the node chain (SQLite keeps one chain). */
    chain?: string;
    seq: number | null;
    time: number;
    kind: string;
    request_id: string;
    agent: string | null;
    service: string | null;
    decision: string | null;
    record: string;
    prev_hash: string;
    hash: string;
  };
  /** PostgreSQL only. */
  audit_chains: { chain: string; node: string; started_at: number };
  audit_checkpoints: {
    chain?: string;
    seq: number;
    hash: string;
    time: number;
    kid: string;
    jws: string;
  };
  oauth_pending: { state_hash: string; service: string; sealed: string; expires_at: number };
  held_approvals: {
    id: string;
    node: string;
    view: string;
    webhook_secret: string | null;
    created_at: number;
    expires_at: number;
    alive_until: number;
    decision: 'approved' | 'denied' | null;
    approver: string | null;
  };
  replay_nonces: { key: string; forget_at: number };
  schema_migrations: { version: number; name: string; applied_at: number };
  meta: { key: string; value: string };
}

export type DialectName = 'sqlite' | 'postgres';

/** A Kysely that compiles for `dialect` and can never execute (DummyDriver). */
export function queryBuilder(dialect: DialectName): Kysely<Database> {
  return new Kysely<Database>({
    dialect:
      dialect === 'sqlite'
        ? {
            createAdapter: () => new SqliteAdapter(),
            createDriver: () => new DummyDriver(),
            createIntrospector: (db) => new SqliteIntrospector(db),
            createQueryCompiler: () => new SqliteQueryCompiler(),
          }
        : {
            createAdapter: () => new PostgresAdapter(),
            createDriver: () => new DummyDriver(),
            createIntrospector: (db) => new PostgresIntrospector(db),
            createQueryCompiler: () => new PostgresQueryCompiler(),
          },
  });
}

/** The dialect hooks: the only places the shared queries differ (see the header). */
export class Dialect {
  readonly db: Kysely<Database>;
  constructor(readonly name: DialectName) {
    this.db = queryBuilder(name);
  }
  /** SQLite stores booleans as 0/1 (and better-sqlite3 binds no booleans). */
  bool(value: boolean): number | boolean {
    return this.name === 'sqlite' ? (value ? 1 : 0) : value;
  }
  /** A text column in byte order (PostgreSQL's default collation is the locale's). */
  bytes(column: string): Expression<unknown> {
    return this.name === 'postgres' ? sql`${sql.ref(column)} collate "C"` : sql.ref(column);
  }
  /** Whether transactions lock the rows they read (PostgreSQL; SQLite locks the file). */
  get rowLocks(): boolean {
    return this.name === 'postgres';
  }
}

// --- plans: statements a driver runs, synchronously (SQLite) or not (PostgreSQL) ---

/** A compiled statement. */
export interface Statement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/** One statement of a plan, and what the plan wants back. */
export interface Step {
  readonly statement: Statement;
  /** `rows`: every row; `row`: the first row or undefined; `count`: rows affected. */
  readonly want: 'rows' | 'row' | 'count';
}

/** A method's queries: yields statements, receives their results, returns its value. */
export type Plan<T> = Generator<Step, T, unknown>;

const compile = (query: Compilable | Statement): Statement =>
  'compile' in query ? query.compile() : query;

/** Every row of `query`. */
export function* rows(query: Compilable | Statement): Plan<Row[]> {
  return (yield { statement: compile(query), want: 'rows' }) as Row[];
}
/** The first row of `query`, or undefined. */
export function* row(query: Compilable | Statement): Plan<Row | undefined> {
  return (yield { statement: compile(query), want: 'row' }) as Row | undefined;
}
/** How many rows `query` changed. */
export function* count(query: Compilable | Statement): Plan<number> {
  return (yield { statement: compile(query), want: 'count' }) as number;
}

/** How a driver runs a plan. */
export interface PlanKind {
  /** A write: SQLite checks its files after it. */
  readonly write: boolean;
  /** Run in one transaction (SQLite: `BEGIN IMMEDIATE`). */
  readonly tx: boolean;
  /** What a unique / foreign-key violation is reported about (`conflict` / `not_found`). */
  readonly what: string;
}

const READ: PlanKind = { write: false, tx: false, what: 'row' };
const write = (what = 'row'): PlanKind => ({ write: true, tx: false, what });
const tx = (what = 'row'): PlanKind => ({ write: true, tx: true, what });

/** A placeholder of a `Template`: stands for the argument at `index` when bound. */
class Slot {
  constructor(readonly index: number) {}
}

/** A typed placeholder for the argument `index` of a `Template`. */
export function slot<T>(index: number): T {
  return new Slot(index) as unknown as T;
}

/**
 * A statement compiled once, with `slot(i)` placeholders bound per call: hot paths pay no
 * query building, and the SQL text stays the same object (cheap statement-cache lookups).
 */
export class Template {
  readonly sql: string;
  /**
   * The parameters are exactly the arguments, in order (`slot(0)`, `slot(1)`, ...): a
   * caller may then pass its arguments to the statement as they are.
   */
  readonly positional: boolean;
  readonly #parameters: readonly unknown[];
  constructor(query: Compilable) {
    const compiled = query.compile();
    this.sql = compiled.sql;
    this.#parameters = compiled.parameters;
    this.positional = compiled.parameters.every((p, i) => p instanceof Slot && p.index === i);
  }
  bind(...args: unknown[]): Statement {
    return {
      sql: this.sql,
      parameters: this.positional
        ? args
        : this.#parameters.map((p) => (p instanceof Slot ? args[p.index] : p)),
    };
  }
}

/** The audit chain a PostgreSQL store writes (SQLite: none, one chain per store). */
export interface ChainOptions {
  readonly chain: string;
  readonly node: string;
  readonly clock: () => number;
}

/** The hot audit statements (compiled once per store). */
function auditTemplates(d: Dialect, chain: string | undefined) {
  const db = d.db;
  const head = db.selectFrom('audit').select(['seq', 'hash']);
  return {
    head: new Template(
      (chain === undefined ? head : head.where('chain', '=', chain))
        .orderBy('seq', 'desc')
        .limit(1),
    ),
    /** A record's hash by seq (SQLite: its single chain; `appendAuditLinked`). */
    hashAt: new Template(db.selectFrom('audit').select('hash').where('seq', '=', slot<number>(0))),
    /** One record (SQLite): args are the `insertAuditArgs` order. */
    insert: new Template(
      db.insertInto('audit').values({
        seq: slot(0),
        time: slot(1),
        kind: slot(2),
        request_id: slot(3),
        agent: slot(4),
        service: slot(5),
        decision: slot(6),
        record: slot(7),
        prev_hash: slot(8),
        hash: slot(9),
      }),
    ),
  };
}

/** The `Template` insert's arguments for one record. */
function insertAuditArgs(row: AuditAppend, seq: number): unknown[] {
  const index = auditIndexFields(row);
  return [
    seq,
    row.time,
    row.kind,
    row.requestId,
    nul(index.agent),
    nul(index.service),
    nul(index.decision),
    row.record,
    row.prevHash,
    row.hash,
  ];
}

export const notLinked = (): NexusError =>
  new NexusError('conflict', 'audit record does not link to the last stored record');

/**
 * `Store` on Kysely-built queries: every method is one plan, run by the backend's
 * `execute` (sqlite.ts, postgres.ts). Subclasses add connections, `close` and extras.
 */
export abstract class KyselyStore implements Store {
  protected readonly d: Dialect;
  /** The audit chain (PostgreSQL); undefined: the store's single chain (SQLite). */
  protected readonly chainOptions: ChainOptions | undefined;
  protected readonly audit: ReturnType<typeof auditTemplates>;
  /** Set once this chain's `audit_chains` row exists (PostgreSQL). */
  #chainRegistered = false;

  constructor(dialect: Dialect, chainOptions?: ChainOptions) {
    this.d = dialect;
    this.chainOptions = chainOptions;
    this.audit = auditTemplates(dialect, chainOptions?.chain);
  }

  /** Runs a plan (a fresh generator per attempt: `body` may be called again on a retry). */
  protected abstract execute<T>(kind: PlanKind, body: () => Plan<T>): Promise<T>;

  abstract close(): Promise<void>;

  // --- agents ---

  upsertAgent(input: AgentUpsert): Promise<AgentRow> {
    const { d } = this;
    return this.execute(write('agent'), function* () {
      const created = yield* row(
        d.db
          .insertInto('agents')
          .values({
            name: input.name,
            roles: JSON.stringify(input.roles),
            disabled: d.bool(input.disabled === true),
            source: input.source,
            created_at: input.createdAt,
          })
          .onConflict((oc) =>
            oc.column('name').doUpdateSet((eb) => ({
              roles: eb.ref('excluded.roles'),
              source: eb.ref('excluded.source'),
              // `disabled` omitted keeps the stored flag.
              ...(input.disabled === undefined ? {} : { disabled: eb.ref('excluded.disabled') }),
            })),
          )
          .returningAll(),
      );
      return toAgent(created as Row);
    });
  }

  getAgent(name: string): Promise<AgentRow | undefined> {
    const { d } = this;
    return this.execute(READ, function* () {
      const r = yield* row(d.db.selectFrom('agents').selectAll().where('name', '=', name));
      return r === undefined ? undefined : toAgent(r);
    });
  }

  listAgents(): Promise<AgentRow[]> {
    const { d } = this;
    return this.execute(READ, function* () {
      return (yield* rows(d.db.selectFrom('agents').selectAll().orderBy(d.bytes('name')))).map(
        toAgent,
      );
    });
  }

  setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow> {
    const { d } = this;
    return this.execute(tx('agent'), function* () {
      const r = yield* row(
        d.db
          .updateTable('agents')
          .set({ disabled: d.bool(disabled) })
          .where('name', '=', name)
          .returningAll(),
      );
      if (r === undefined) throw new NexusError('not_found', 'agent not found');
      // MUST: disabling voids the agent's outstanding enrollment tokens, in the same
      // transaction, so none of them works again after a later enable (issue 10).
      if (disabled) {
        yield* count(
          d.db
            .deleteFrom('enrollment_tokens')
            .where('agent', '=', name)
            .where('used_at', 'is', null),
        );
      }
      return toAgent(r);
    });
  }

  deleteAgent(name: string, at: number): Promise<void> {
    const { d } = this;
    return this.execute(tx('agent'), function* () {
      const r = yield* row(
        d.db
          .selectFrom('agents')
          .select('source')
          .where('name', '=', name)
          .$if(d.rowLocks, (q) => q.forUpdate()),
      );
      if (r === undefined) throw new NexusError('not_found', 'agent not found');
      if (r.source !== 'api') {
        throw new NexusError('conflict', 'agent is defined in the config file; remove it there');
      }
      yield* count(
        d.db
          .updateTable('leases')
          .set({ revoked_at: at })
          .where('agent', '=', name)
          .where('revoked_at', 'is', null),
      );
      // Enrollment tokens go with the agent (ON DELETE CASCADE).
      yield* count(d.db.deleteFrom('agents').where('name', '=', name));
    });
  }

  // --- enrollment tokens ---

  createEnrollmentToken(t: EnrollmentTokenInsert): Promise<void> {
    const { d } = this;
    return this.execute(tx('enrollment token'), function* () {
      // Checked in the inserting transaction (PostgreSQL: FOR SHARE, so a concurrent
      // disable, which voids tokens, waits for this insert or is seen by it).
      const agent = yield* row(
        d.db
          .selectFrom('agents')
          .select('disabled')
          .where('name', '=', t.agent)
          .$if(d.rowLocks, (q) => q.forShare()),
      );
      if (agent === undefined) {
        throw new NexusError('not_found', 'enrollment token refers to an unknown agent');
      }
      // 0/1 (SQLite) or a boolean (PostgreSQL): Number() reads both.
      if (num(agent.disabled) === 1) throw new NexusError('agent_disabled');
      yield* count(
        d.db.insertInto('enrollment_tokens').values({
          id: t.id,
          agent: t.agent,
          token_hash: t.tokenHash,
          act: nul(t.act),
          task: nul(t.task),
          expires_at: t.expiresAt,
          created_at: t.createdAt,
        }),
      );
    });
  }

  consumeEnrollmentToken(tokenHash: string, now: number): Promise<EnrollmentTokenRow | undefined> {
    const { d } = this;
    return this.execute(write(), function* () {
      // One statement: the check and the mark are atomic across connections (PostgreSQL's
      // READ COMMITTED re-checks the WHERE clause after a concurrent update).
      const r = yield* row(
        d.db
          .updateTable('enrollment_tokens')
          .set({ used_at: now })
          .where('token_hash', '=', tokenHash)
          .where('used_at', 'is', null)
          .where('expires_at', '>', now)
          .returningAll(),
      );
      return r === undefined ? undefined : toEnrollment(r);
    });
  }

  // --- leases ---

  insertLease(l: LeaseInsert): Promise<void> {
    const { d } = this;
    return this.execute(tx('lease'), function* () {
      const agent = yield* row(
        d.db
          .selectFrom('agents')
          .select('name')
          .where('name', '=', l.agent)
          .$if(d.rowLocks, (q) => q.forShare()),
      );
      if (agent === undefined)
        throw new NexusError('not_found', 'lease refers to an unknown agent');
      yield* count(
        d.db.insertInto('leases').values({
          jti: l.jti,
          agent: l.agent,
          public_jwk: JSON.stringify(l.publicJwk),
          jkt: l.jkt,
          issued_at: l.issuedAt,
          expires_at: l.expiresAt,
          chain_started_at: l.chainStartedAt,
          parent_jti: nul(l.parentJti),
          act: nul(l.act),
          task: nul(l.task),
          delegation: l.delegation === undefined ? null : JSON.stringify(l.delegation),
        }),
      );
    });
  }

  getLease(jti: string): Promise<LeaseRow | undefined> {
    const { d } = this;
    return this.execute(READ, function* () {
      const r = yield* row(d.db.selectFrom('leases').selectAll().where('jti', '=', jti));
      return r === undefined ? undefined : toLease(r);
    });
  }

  listLeases(filter: LeaseFilter = {}): Promise<LeaseRow[]> {
    const { d } = this;
    const { agent, activeAt } = filter;
    return this.execute(READ, function* () {
      const query = d.db
        .selectFrom('leases as l')
        .selectAll('l')
        .$if(agent !== undefined, (q) => q.where('l.agent', '=', agent!))
        .$if(activeAt !== undefined, (q) =>
          q
            .where('l.revoked_at', 'is', null)
            .where('l.expires_at', '>', activeAt!)
            .where((eb) =>
              eb.not(
                eb.exists(
                  eb
                    .selectFrom('revocation_epochs as e')
                    .select(sql.lit(1).as('one'))
                    .whereRef('l.issued_at', '<=', 'e.at')
                    .where((e) =>
                      e.or([
                        e('e.kind', '=', sql.lit('all')),
                        e.and([
                          e('e.kind', '=', sql.lit('agent')),
                          e('e.agent', '=', e.ref('l.agent')),
                        ]),
                      ]),
                    ),
                ),
              ),
            ),
        )
        .orderBy('l.issued_at', 'desc')
        .orderBy(d.bytes('l.jti'))
        .limit(clampLimit(filter.limit, 100));
      return (yield* rows(query)).map(toLease);
    });
  }

  revokeLease(jti: string, at: number): Promise<LeaseRow> {
    const { d } = this;
    return this.execute(write('lease'), function* () {
      const r = yield* row(
        d.db
          .updateTable('leases')
          .set({ revoked_at: sql<number>`coalesce(revoked_at, ${at})` })
          .where('jti', '=', jti)
          .returningAll(),
      );
      if (r === undefined) throw new NexusError('not_found', 'lease not found');
      return toLease(r);
    });
  }

  revokeLeaseChain(jti: string, at: number): Promise<string[]> {
    const { d } = this;
    return this.execute(tx('lease'), function* () {
      const start = yield* row(
        d.db.selectFrom('leases').select(['agent', 'parent_jti']).where('jti', '=', jti),
      );
      if (start === undefined) throw new NexusError('not_found', 'lease not found');
      const agent = str(start.agent);
      // Up to the first lease of the chain (a visited set stops a corrupt cycle).
      let root = jti;
      const seen = new Set([jti]);
      for (let parent = start.parent_jti; typeof parent === 'string' && !seen.has(parent);) {
        const r = yield* row(
          d.db
            .selectFrom('leases')
            .select('parent_jti')
            .where('jti', '=', parent)
            .where('agent', '=', agent),
        );
        if (r === undefined) break;
        seen.add(parent);
        root = parent;
        parent = r.parent_jti;
      }
      // Down from it: UNION (not UNION ALL) visits each jti once, so a cycle ends too.
      const chain = (yield* rows(
        sql`WITH RECURSIVE chain(jti) AS (
                SELECT CAST(${root} AS TEXT)
                UNION
                SELECT l.jti FROM leases l JOIN chain ON l.parent_jti = chain.jti
                WHERE l.agent = ${agent}
              )
              SELECT chain.jti FROM chain JOIN leases ON leases.jti = chain.jti
              ORDER BY leases.issued_at, ${d.bytes('chain.jti')}`.compile(d.db),
      )).map((r) => str(r.jti));
      yield* count(
        d.db
          .updateTable('leases')
          .set({ revoked_at: sql<number>`coalesce(revoked_at, ${at})` })
          .where('jti', 'in', chain),
      );
      return chain;
    });
  }

  listRevokedLeaseIds(expiresAfter: number): Promise<string[]> {
    const { d } = this;
    return this.execute(READ, function* () {
      return (yield* rows(
        d.db
          .selectFrom('leases')
          .select('jti')
          .where('revoked_at', 'is not', null)
          .where('expires_at', '>', expiresAfter),
      )).map((r) => str(r.jti));
    });
  }

  setRevocationEpoch(scope: RevocationScope, at: number): Promise<void> {
    const { d } = this;
    const [kind, agent] =
      scope === 'all' ? (['all', ''] as const) : (['agent', scope.agent] as const);
    return this.execute(write(), function* () {
      // Raises, never lowers (CASE: SQLite's max(a, b) is PostgreSQL's greatest(a, b)).
      yield* count(
        d.db
          .insertInto('revocation_epochs')
          .values({ kind, agent, at })
          .onConflict((oc) =>
            oc.columns(['kind', 'agent']).doUpdateSet({
              at: sql<number>`CASE WHEN excluded.at > revocation_epochs.at
                THEN excluded.at ELSE revocation_epochs.at END`,
            }),
          ),
      );
    });
  }

  getRevocationEpochs(): Promise<RevocationEpochs> {
    const { d } = this;
    return this.execute(READ, function* () {
      const epochs: RevocationEpochs = { agents: {} };
      for (const r of yield* rows(
        d.db.selectFrom('revocation_epochs').select(['kind', 'agent', 'at']),
      )) {
        if (r.kind === 'all') epochs.all = num(r.at);
        else epochs.agents[str(r.agent)] = num(r.at);
      }
      return epochs;
    });
  }

  // --- signing keys ---

  insertSigningKey(k: SigningKeyInsert): Promise<void> {
    const { d } = this;
    return this.execute(write('signing key'), function* () {
      yield* count(
        d.db.insertInto('signing_keys').values({
          kid: k.kid,
          alg: k.alg,
          public_jwk: JSON.stringify(k.publicJwk),
          private_key_enc: k.privateKeyEnc,
          status: 'active',
          created_at: k.createdAt,
        }),
      );
    });
  }

  listSigningKeys(): Promise<SigningKeyRow[]> {
    const { d } = this;
    return this.execute(READ, function* () {
      return (yield* rows(
        d.db.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy(d.bytes('kid')),
      )).map(toSigningKey);
    });
  }

  retireSigningKey(kid: string, at: number, verifyUntil: number): Promise<SigningKeyRow> {
    const { d } = this;
    return this.execute(write('signing key'), function* () {
      const r = yield* row(
        d.db
          .updateTable('signing_keys')
          .set({ status: 'retired', retired_at: at, verify_until: verifyUntil })
          .where('kid', '=', kid)
          .returningAll(),
      );
      if (r === undefined) throw new NexusError('not_found', 'signing key not found');
      return toSigningKey(r);
    });
  }

  // --- operator tokens ---

  insertOperatorToken(t: OperatorTokenInsert): Promise<void> {
    const { d } = this;
    return this.execute(write('operator token'), function* () {
      yield* count(
        d.db.insertInto('operator_tokens').values({
          id: t.id,
          name: t.name,
          token_hash: t.tokenHash,
          created_at: t.createdAt,
        }),
      );
    });
  }

  findOperatorTokenByHash(tokenHash: string): Promise<OperatorTokenRow | undefined> {
    const { d } = this;
    return this.execute(READ, function* () {
      const r = yield* row(
        d.db
          .selectFrom('operator_tokens')
          .selectAll()
          .where('token_hash', '=', tokenHash)
          .where('revoked_at', 'is', null),
      );
      return r === undefined ? undefined : toOperatorToken(r);
    });
  }

  listOperatorTokens(): Promise<OperatorTokenRow[]> {
    const { d } = this;
    return this.execute(READ, function* () {
      return (yield* rows(
        d.db.selectFrom('operator_tokens').selectAll().orderBy('created_at').orderBy(d.bytes('id')),
      )).map(toOperatorToken);
    });
  }

  revokeOperatorToken(id: string, at: number): Promise<OperatorTokenRow> {
    const { d } = this;
    return this.execute(write('operator token'), function* () {
      const r = yield* row(
        d.db
          .updateTable('operator_tokens')
          .set({ revoked_at: sql<number>`coalesce(revoked_at, ${at})` })
          .where('id', '=', id)
          .returningAll(),
      );
      if (r === undefined) throw new NexusError('not_found', 'operator token not found');
      return toOperatorToken(r);
    });
  }

  // --- credentials ---

  putCredentialVersion(name: string, input: CredentialVersionInput): Promise<CredentialVersionRow> {
    const { d } = this;
    return this.execute(tx('credential'), function* () {
      // One statement allocates the version and (PostgreSQL) locks the name until commit:
      // concurrent writers wait here and then see the version this one took. A name set
      // again after a delete starts a new life (createdAt), not a new numbering.
      const allocated = yield* row(
        d.db
          .insertInto('credentials')
          .values({ name, last_version: 1, created_at: input.createdAt })
          .onConflict((oc) =>
            oc.column('name').doUpdateSet({
              last_version: sql<number>`credentials.last_version + 1`,
              created_at: sql<number>`CASE WHEN credentials.deleted_at IS NULL
                THEN credentials.created_at ELSE excluded.created_at END`,
              deleted_at: null,
            }),
          )
          .returning('last_version'),
      );
      const version = num((allocated as Row).last_version);
      const sealed = input.seal(version);
      // Only the current version keeps a sealed payload: superseded values are erased.
      yield* count(
        d.db
          .updateTable('credential_versions')
          .set({ sealed: null })
          .where('name', '=', name)
          .where('sealed', 'is not', null),
      );
      yield* count(
        d.db.insertInto('credential_versions').values({
          name,
          version,
          field_names: JSON.stringify(input.fieldNames),
          sealed,
          created_at: input.createdAt,
        }),
      );
      return { name, version, fieldNames: [...input.fieldNames], createdAt: input.createdAt };
    });
  }

  /** The current version of live credentials (`name` given: that one). */
  #currentCredentials(name: string | undefined, withSealed: boolean) {
    return this.d.db
      .selectFrom('credentials as c')
      .innerJoin('credential_versions as v', (j) =>
        j.onRef('v.name', '=', 'c.name').onRef('v.version', '=', 'c.last_version'),
      )
      .select([
        'c.name',
        'v.version',
        'v.field_names',
        'c.created_at',
        'v.created_at as updated_at',
      ])
      .$if(withSealed, (q) => q.select('v.sealed').where('v.sealed', 'is not', null))
      .$if(name !== undefined, (q) => q.where('c.name', '=', name!))
      .where('c.deleted_at', 'is', null);
  }

  getCredential(name: string): Promise<CredentialRow | undefined> {
    const query = this.#currentCredentials(name, true);
    return this.execute(READ, function* () {
      const r = yield* row(query);
      return r === undefined ? undefined : { ...toCredentialMeta(r), sealed: str(r.sealed) };
    });
  }

  listCredentials(): Promise<CredentialMeta[]> {
    const query = this.#currentCredentials(undefined, false).orderBy(this.d.bytes('c.name'));
    return this.execute(READ, function* () {
      return (yield* rows(query)).map(toCredentialMeta);
    });
  }

  deleteCredential(name: string, at: number): Promise<void> {
    const { d } = this;
    return this.execute(tx('credential'), function* () {
      const changed = yield* count(
        d.db
          .updateTable('credentials')
          .set({ deleted_at: at })
          .where('name', '=', name)
          .where('deleted_at', 'is', null),
      );
      if (changed === 0) throw new NexusError('not_found', 'credential not found');
      yield* count(
        d.db.updateTable('credential_versions').set({ sealed: null }).where('name', '=', name),
      );
    });
  }

  listAllSealed(): Promise<SealedRecord[]> {
    const { d } = this;
    return this.execute(READ, function* () {
      const records: SealedRecord[] = [];
      for (const r of yield* rows(
        d.db
          .selectFrom('credential_versions')
          .select(['name', 'version', 'sealed'])
          .where('sealed', 'is not', null)
          .orderBy(d.bytes('name'))
          .orderBy('version'),
      )) {
        records.push({
          ref: { kind: 'credential', name: str(r.name), version: num(r.version) },
          sealed: str(r.sealed),
        });
      }
      for (const r of yield* rows(
        d.db.selectFrom('signing_keys').select(['kid', 'private_key_enc']).orderBy(d.bytes('kid')),
      )) {
        records.push({
          ref: { kind: 'signing_key', kid: str(r.kid) },
          sealed: str(r.private_key_enc),
        });
      }
      return records;
    });
  }

  replaceSealed(replacements: SealedReplacement[]): Promise<number> {
    if (replacements.length === 0) return Promise.resolve(0);
    const { d } = this;
    return this.execute(tx(), function* () {
      let changed = 0;
      for (const { ref, previous, sealed } of replacements) {
        changed += yield* count(
          ref.kind === 'credential'
            ? d.db
                .updateTable('credential_versions')
                .set({ sealed })
                .where('name', '=', ref.name)
                .where('version', '=', ref.version)
                .where('sealed', '=', previous)
            : d.db
                .updateTable('signing_keys')
                .set({ private_key_enc: sealed })
                .where('kid', '=', ref.kid)
                .where('private_key_enc', '=', previous),
        );
      }
      return changed;
    });
  }

  // --- audit (PostgreSQL: this store's chain) ---

  /** The last record's seq and hash (of this chain), read in the running transaction. */
  protected *auditHead(): Plan<{ seq: number; hash: string } | undefined> {
    const r = yield* row(this.audit.head.bind());
    return r === undefined ? undefined : { seq: num(r.seq), hash: str(r.hash) };
  }

  /**
   * Inserts records whose seqs follow `last` (checked against the chain by the caller).
   * SQLite: one cached single-row statement per record; PostgreSQL: one `unnest`
   * statement for the whole group commit (one round trip), registering the chain first.
   */
  protected *insertAudit(records: AuditAppend[], first: number): Plan<void> {
    const c = this.chainOptions;
    if (c === undefined) {
      for (let i = 0; i < records.length; i++) {
        yield* count(this.audit.insert.bind(...insertAuditArgs(records[i]!, first + i)));
      }
      return;
    }
    if (!this.#chainRegistered) {
      yield* count(
        this.d.db
          .insertInto('audit_chains')
          .values({ chain: c.chain, node: c.node, started_at: c.clock() })
          .onConflict((oc) => oc.column('chain').doNothing()),
      );
    }
    const cols: unknown[][] = Array.from({ length: 10 }, () => []);
    records.forEach((r, i) => insertAuditArgs(r, first + i).forEach((v, k) => cols[k]!.push(v)));
    const types = [
      'bigint',
      'bigint',
      'text',
      'text',
      'text',
      'text',
      'text',
      'text',
      'text',
      'text',
    ];
    const arrays = sql.join(cols.map((col, k) => sql`${col}::${sql.raw(types[k]!)}[]`));
    // Two writers on one chain (a random chain id makes it impossible, a reused one would
    // not) collide on the primary key: the second fails with `conflict`, writes nothing.
    yield* count(
      this.d.db
        .insertInto('audit')
        .columns([
          'chain',
          'seq',
          'time',
          'kind',
          'request_id',
          'agent',
          'service',
          'decision',
          'record',
          'prev_hash',
          'hash',
        ])
        .expression(sql`SELECT ${c.chain}, * FROM unnest(${arrays})` as RawBuilder<never>),
    );
    this.#chainRegistered = true;
  }

  appendAudit(records: AuditAppend[]): Promise<number[]> {
    if (records.length === 0) return Promise.resolve([]);
    return this.execute(tx('audit record'), () => this.#appendAuditPlan(records));
  }

  *#appendAuditPlan(records: AuditAppend[]): Plan<number[]> {
    const last = yield* this.auditHead();
    let previous = last?.hash;
    for (const r of records) {
      // Another writer appended first: the caller's chain forked. Nothing is written.
      if (previous !== undefined && r.prevHash !== previous) throw notLinked();
      previous = r.hash;
    }
    const first = (last?.seq ?? 0) + 1;
    yield* this.insertAudit(records, first);
    return records.map((_, i) => first + i);
  }

  /** `readAudit` / `lastAudit` / `countAudit` of this chain. */
  #chainAudit() {
    const chain = this.chainOptions?.chain;
    return this.d.db
      .selectFrom('audit')
      .$if(chain !== undefined, (q) => q.where('chain', '=', chain!));
  }

  lastAudit(): Promise<AuditRow | undefined> {
    const query = this.#chainAudit().selectAll().orderBy('seq', 'desc').limit(1);
    return this.execute(READ, function* () {
      const r = yield* row(query);
      return r === undefined ? undefined : toAudit(r);
    });
  }

  readAudit(options: { fromSeq: number; limit?: number }): Promise<AuditRow[]> {
    const query = this.#chainAudit()
      .selectAll()
      .where('seq', '>=', options.fromSeq)
      .orderBy('seq')
      .limit(clampLimit(options.limit, 1000));
    return this.execute(READ, function* () {
      return (yield* rows(query)).map(toAudit);
    });
  }

  /** PostgreSQL: searches every chain (the whole cluster), rows carry their `chain`, time order. */
  queryAudit(filter: AuditQuery): Promise<AuditRow[]> {
    const { d } = this;
    const multiChain = this.chainOptions !== undefined;
    const order = filter.order === 'asc' ? 'asc' : 'desc';
    let query = d.db.selectFrom('audit').selectAll();
    const equal: ['agent' | 'service' | 'decision' | 'request_id' | 'kind', string | undefined][] =
      [
        ['agent', filter.agent === undefined ? undefined : auditAgentKey(filter.agent)],
        ['service', filter.service],
        ['decision', filter.decision],
        ['request_id', filter.requestId],
        ['kind', filter.kind],
      ];
    for (const [column, value] of equal)
      if (value !== undefined) query = query.where(column, '=', value);
    if (filter.since !== undefined) query = query.where('time', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('time', '<', filter.until);
    query = multiChain
      ? query
          .orderBy('time', order)
          .orderBy(sql`${d.bytes('chain')} ${sql.raw(order)}`)
          .orderBy('seq', order)
      : query.orderBy('seq', order);
    query = query.limit(clampLimit(filter.limit, 100));
    return this.execute(READ, function* () {
      return (yield* rows(query)).map((r) =>
        multiChain ? { ...toAudit(r), chain: str(r.chain) } : toAudit(r),
      );
    });
  }

  countAudit(): Promise<number> {
    const query = this.#chainAudit().select((eb) => eb.fn.countAll().as('n'));
    return this.execute(READ, function* () {
      return num((yield* row(query))?.n);
    });
  }

  insertCheckpoint(c: CheckpointRow): Promise<void> {
    const { d } = this;
    const chain = this.chainOptions?.chain;
    return this.execute(write('checkpoint'), function* () {
      yield* count(
        d.db.insertInto('audit_checkpoints').values({
          ...(chain === undefined ? {} : { chain }),
          seq: c.seq,
          hash: c.hash,
          time: c.time,
          kid: c.kid,
          jws: c.jws,
        }),
      );
    });
  }

  #checkpoints() {
    const chain = this.chainOptions?.chain;
    return this.d.db
      .selectFrom('audit_checkpoints')
      .selectAll()
      .$if(chain !== undefined, (q) => q.where('chain', '=', chain!));
  }

  listCheckpoints(): Promise<CheckpointRow[]> {
    const query = this.#checkpoints().orderBy('seq');
    return this.execute(READ, function* () {
      return (yield* rows(query)).map(toCheckpoint);
    });
  }

  lastCheckpoint(): Promise<CheckpointRow | undefined> {
    const query = this.#checkpoints().orderBy('seq', 'desc').limit(1);
    return this.execute(READ, function* () {
      const r = yield* row(query);
      return r === undefined ? undefined : toCheckpoint(r);
    });
  }

  // --- pending OAuth links ---

  putOAuthPending(p: OAuthPendingRow, now: number): Promise<void> {
    const { d } = this;
    return this.execute(write('pending link'), function* () {
      yield* count(d.db.deleteFrom('oauth_pending').where('expires_at', '<=', now));
      yield* count(
        d.db.insertInto('oauth_pending').values({
          state_hash: p.stateHash,
          service: p.service,
          sealed: p.sealed,
          expires_at: p.expiresAt,
        }),
      );
    });
  }

  peekOAuthPending(stateHash: string, now: number): Promise<string | undefined> {
    const { d } = this;
    return this.execute(READ, function* () {
      const r = yield* row(
        d.db
          .selectFrom('oauth_pending')
          .select('service')
          .where('state_hash', '=', stateHash)
          .where('expires_at', '>', now),
      );
      return r === undefined ? undefined : str(r.service);
    });
  }

  takeOAuthPending(stateHash: string, now: number): Promise<OAuthPendingRow | undefined> {
    const { d } = this;
    return this.execute(write(), function* () {
      const r = yield* row(
        d.db.deleteFrom('oauth_pending').where('state_hash', '=', stateHash).returningAll(),
      );
      return r === undefined ? undefined : pendingRow(r, now);
    });
  }

  // --- requests held for approval (a cluster's) ---

  putHeldApproval(h: HeldApprovalRow, now: number): Promise<void> {
    const { d } = this;
    return this.execute(write('held approval'), function* () {
      // Rows of nodes that died (their holder stopped keeping them alive).
      yield* count(d.db.deleteFrom('held_approvals').where('alive_until', '<=', now));
      yield* count(
        d.db.insertInto('held_approvals').values({
          id: h.id,
          node: h.node,
          view: h.view,
          webhook_secret: nul(h.webhookSecret),
          created_at: h.createdAt,
          expires_at: h.expiresAt,
          alive_until: h.aliveUntil,
          decision: null,
          approver: null,
        }),
      );
    });
  }

  /** Undecided, held by a live node, not expired. */
  #liveHeld(now: number) {
    return this.d.db
      .selectFrom('held_approvals')
      .selectAll()
      .where('decision', 'is', null)
      .where('alive_until', '>', now)
      .where('expires_at', '>', now);
  }

  listHeldApprovals(now: number): Promise<HeldApprovalRow[]> {
    const query = this.#liveHeld(now).orderBy('created_at').orderBy(this.d.bytes('id'));
    return this.execute(READ, function* () {
      return (yield* rows(query)).map(toHeldApproval);
    });
  }

  getHeldApproval(id: string, now: number): Promise<HeldApprovalRow | undefined> {
    const query = this.#liveHeld(now).where('id', '=', id);
    return this.execute(READ, function* () {
      const r = yield* row(query);
      return r === undefined ? undefined : toHeldApproval(r);
    });
  }

  decideHeldApproval(
    id: string,
    decision: HeldDecision,
    now: number,
  ): Promise<HeldApprovalRow | undefined> {
    const { d } = this;
    return this.execute(write(), function* () {
      // One statement: of concurrent decisions one matches `decision IS NULL` (PostgreSQL's
      // READ COMMITTED re-checks the WHERE clause after a concurrent update).
      const r = yield* row(
        d.db
          .updateTable('held_approvals')
          .set({ decision: decision.approved ? 'approved' : 'denied', approver: decision.approver })
          .where('id', '=', id)
          .where('decision', 'is', null)
          .where('alive_until', '>', now)
          .where('expires_at', '>', now)
          .returningAll(),
      );
      return r === undefined ? undefined : toHeldApproval(r);
    });
  }

  takeHeldDecisions(node: string): Promise<(HeldDecision & { readonly id: string })[]> {
    const { d } = this;
    return this.execute(write(), function* () {
      const taken = yield* rows(
        d.db
          .deleteFrom('held_approvals')
          .where('node', '=', node)
          .where('decision', 'is not', null)
          .returning(['id', 'decision', 'approver']),
      );
      return taken.map((r) => ({
        id: str(r.id),
        approved: str(r.decision) === 'approved',
        approver: str(r.approver),
      }));
    });
  }

  endHeldApproval(id: string): Promise<HeldDecision | undefined> {
    const { d } = this;
    return this.execute(write(), function* () {
      const r = yield* row(
        d.db.deleteFrom('held_approvals').where('id', '=', id).returning(['decision', 'approver']),
      );
      return r === undefined || r.decision === null || r.decision === undefined
        ? undefined
        : { approved: str(r.decision) === 'approved', approver: str(r.approver) };
    });
  }

  touchHeldApprovals(node: string, aliveUntil: number): Promise<void> {
    const { d } = this;
    return this.execute(write(), function* () {
      yield* count(
        d.db
          .updateTable('held_approvals')
          .set({ alive_until: aliveUntil })
          .where('node', '=', node)
          .where('decision', 'is', null),
      );
    });
  }

  // --- meta ---

  getMeta(key: string): Promise<string | undefined> {
    const { d } = this;
    return this.execute(READ, function* () {
      const r = yield* row(d.db.selectFrom('meta').select('value').where('key', '=', key));
      return r === undefined ? undefined : str(r.value);
    });
  }

  setMeta(key: string, value: string): Promise<void> {
    const { d } = this;
    return this.execute(write(), function* () {
      yield* count(
        d.db
          .insertInto('meta')
          .values({ key, value })
          .onConflict((oc) =>
            oc.column('key').doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })),
          ),
      );
    });
  }
}

/**
 * The replay-record statements of the shared replay guards (proxy/replay-sqlite.ts for
 * `--workers` on SQLite, proxy/replay-shared.ts on PostgreSQL), compiled once.
 */
export function replayStatements(dialect: DialectName): {
  record: Template;
  sweep: Template;
  sweepSome: Template;
} {
  const db = queryBuilder(dialect);
  return {
    /**
     * Arguments: key, forget-at, now. Changes one row (recorded) or none (a replay): the
     * unique key decides, atomically. A record past its time that the sweep has not yet
     * removed is taken over, as the in-memory cache would have forgotten it.
     */
    record: new Template(
      db
        .insertInto('replay_nonces')
        .values({ key: slot(0), forget_at: slot(1) })
        .onConflict((oc) =>
          oc
            .column('key')
            .doUpdateSet((eb) => ({ forget_at: eb.ref('excluded.forget_at') }))
            .where('replay_nonces.forget_at', '<=', slot<number>(2)),
        ),
    ),
    /** Argument: now. Deletes the records past their time. */
    sweep: new Template(db.deleteFrom('replay_nonces').where('forget_at', '<=', slot<number>(0))),
    /**
     * Arguments: now, limit. Deletes at most `limit` records past their time (SQLite's
     * `rowid`: the audit thread's bounded sweep under `--workers`).
     */
    sweepSome: new Template(
      db
        .deleteFrom('replay_nonces')
        .where(
          sql.ref('rowid'),
          'in',
          db
            .selectFrom('replay_nonces')
            .select(sql.ref('rowid').as('rowid'))
            .where('forget_at', '<=', slot<number>(0))
            .limit(slot<number>(1)),
        ),
    ),
  };
}
