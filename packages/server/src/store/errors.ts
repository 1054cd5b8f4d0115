// Store start-up errors. Runtime failures (`not_found`, `conflict`) are `NexusError`s
// from `@nexus-proxy/protocol`; the codes below are not in the protocol table yet (they
// never reach a client: they stop `nexus up`). Messages MUST NOT contain secrets.

/** Codes only the store raises, at open time. */
export type StoreErrorCode =
  /** The database schema is newer (or in read-only mode, older) than this code. */
  | 'store_version_unsupported'
  /** The `store` URL names a backend this build does not support. */
  | 'store_unsupported'
  /** The `store` URL is malformed. */
  | 'store_url_invalid'
  /** There is no database at the path (`nexus init` creates stores; `nexus up` never does). */
  | 'store_missing'
  /** Another live node holds the store's node lock (one node per SQLite store). */
  | 'store_in_use'
  /** The store file has several names (hard links): two nodes could open it apart. */
  | 'store_linked'
  /** The audit chain lost records its checkpoint file vouches for (truncated, restored). */
  | 'audit_truncated';

/** A store start-up error with a stable `code` (same shape as `NexusError`). */
export class StoreError extends Error {
  /** Stable machine-readable code; tests and callers switch on this, never on `message`. */
  readonly code: StoreErrorCode;
  /** Always 500: a start-up failure, not a client error. */
  readonly status = 500;
  /** Never shown to a client. */
  readonly expose = false;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}
