/**
 * The web console's login sessions: in memory only (a restart logs every operator out),
 * each with an idle and an absolute expiry and its own CSRF token.
 *
 * MUST: the session id and the CSRF token come from the CSPRNG; the id is looked up by its
 * SHA-256 hash, so the map never holds the cookie value itself. MUST NOT: a session or its
 * operator token ever reaches a log line or a response other than the Set-Cookie that
 * creates it.
 */
import { randomId, sha256Hex } from '../util/ids.js';

/** One logged-in operator. */
export interface ConsoleSession {
  /** Sent by the page in `x-nexus-csrf` on every state-changing request. */
  readonly csrf: string;
  /**
   * The bearer the console calls the admin API with: the operator token logged in with (a
   * revoked operator token ends the session at its next call), or the person token minted
   * at an OIDC login (admin/callers.ts). Server memory only.
   */
  readonly bearer: string;
  /** Who is logged in, for the page: a name and the role the admin API enforces. */
  readonly user: SessionUser;
  readonly createdAt: number;
  lastSeen: number;
}

/** Who a session belongs to (shown on the page; the admin API enforces the role). */
export interface SessionUser {
  readonly type: 'operator_token' | 'person';
  readonly name: string;
  readonly role: 'viewer' | 'operator' | 'admin';
}

/** Limits of {@link ConsoleSessions}. */
export interface SessionLimits {
  /** A session unused this long expires (default 30 minutes). */
  readonly idleMs?: number;
  /** A session expires this long after login whatever its use (default 12 hours). */
  readonly absoluteMs?: number;
  /** At most this many live sessions; the oldest is dropped first (default 1000). */
  readonly max?: number;
}

/**
 * What the console handler needs of a session table: this process's {@link ConsoleSessions},
 * or the one the primary of `nexus up --workers N` holds for every worker
 * (app/worker-sessions.ts), which answers asynchronously.
 */
export interface SessionTable {
  /** Seconds a fresh session cookie lives (its Max-Age). */
  readonly maxAgeSeconds: number;
  /** Creates a session; returns the cookie value (shown once, stored hashed). */
  create(
    bearer: string,
    user: SessionUser,
  ): { id: string; session: ConsoleSession } | Promise<{ id: string; session: ConsoleSession }>;
  /** The live session of a cookie value, refreshed; undefined if unknown or expired. */
  get(id: string | undefined): ConsoleSession | undefined | Promise<ConsoleSession | undefined>;
  /** Ends a session. */
  delete(id: string | undefined): void | Promise<void>;
}

/** The in-memory session table. */
export class ConsoleSessions implements SessionTable {
  readonly #byHash = new Map<string, ConsoleSession>();
  readonly #idleMs: number;
  readonly #absoluteMs: number;
  readonly #max: number;
  readonly #clock: () => number;

  readonly #onEnd: (s: ConsoleSession) => void;

  /** `onEnd` runs once for every session that ends (logout, expiry, eviction). */
  constructor(
    clock: () => number,
    limits: SessionLimits = {},
    onEnd: (s: ConsoleSession) => void = () => {},
  ) {
    this.#clock = clock;
    this.#onEnd = onEnd;
    this.#idleMs = limits.idleMs ?? 30 * 60_000;
    this.#absoluteMs = limits.absoluteMs ?? 12 * 3_600_000;
    this.#max = limits.max ?? 1000;
  }

  /** Seconds a fresh session cookie lives (its Max-Age): the absolute expiry. */
  get maxAgeSeconds(): number {
    return Math.floor(this.#absoluteMs / 1000);
  }

  /** Creates a session; returns the cookie value (shown once, stored hashed). */
  create(bearer: string, user: SessionUser): { id: string; session: ConsoleSession } {
    const now = this.#clock();
    this.#sweep(now);
    while (this.#byHash.size >= this.#max) {
      // Map iteration is insertion order: the first key is the oldest session.
      const oldest = this.#byHash.keys().next().value;
      if (oldest === undefined) break;
      this.#end(oldest);
    }
    const id = randomId(32);
    const session: ConsoleSession = {
      csrf: randomId(32),
      bearer,
      user,
      createdAt: now,
      lastSeen: now,
    };
    this.#byHash.set(sha256Hex(id), session);
    return { id, session };
  }

  /** The live session of a cookie value, refreshed; undefined if unknown or expired. */
  get(id: string | undefined): ConsoleSession | undefined {
    if (id === undefined || id.length === 0 || id.length > 128) return undefined;
    const key = sha256Hex(id);
    const s = this.#byHash.get(key);
    if (s === undefined) return undefined;
    const now = this.#clock();
    if (this.#expired(s, now)) {
      this.#end(key);
      return undefined;
    }
    s.lastSeen = now;
    return s;
  }

  /** Ends a session (logout, or its operator token was refused). */
  delete(id: string | undefined): void {
    if (id !== undefined) this.#end(sha256Hex(id));
  }

  /** Live sessions (tests and status). */
  get size(): number {
    this.#sweep(this.#clock());
    return this.#byHash.size;
  }

  #expired(s: ConsoleSession, now: number): boolean {
    return now - s.lastSeen >= this.#idleMs || now - s.createdAt >= this.#absoluteMs;
  }

  #sweep(now: number): void {
    for (const [k, s] of this.#byHash) if (this.#expired(s, now)) this.#end(k);
  }

  #end(key: string): void {
    const s = this.#byHash.get(key);
    if (s === undefined) return;
    this.#byHash.delete(key);
    this.#onEnd(s);
  }
}
