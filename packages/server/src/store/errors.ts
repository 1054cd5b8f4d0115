// Store errors: a stable `code` per failure so callers map them to problem responses.
// Stand-in until `NexusError` from `@nexus/protocol` lands; same shape (code, status,
// expose, cause). Messages MUST NOT contain secrets, token values or raw input.

/** Codes the store throws. */
export type StoreErrorCode =
  /** The row addressed by a mutation does not exist. */
  | 'not_found'
  /** A row with that key exists already, or the write conflicts with the current state. */
  | 'conflict'
  /** The database schema is newer (or in read-only mode, older) than this code. */
  | 'store_version_unsupported'
  /** The `store` URL names a backend this build does not support yet (e.g. postgres). */
  | 'store_unsupported'
  /** The `store` URL is malformed. */
  | 'store_url_invalid';

const STATUS: Record<StoreErrorCode, number> = {
  not_found: 404,
  conflict: 409,
  store_version_unsupported: 500,
  store_unsupported: 500,
  store_url_invalid: 500,
};

/** An error raised by a `Store` backend, with a stable `code`. */
export class StoreError extends Error {
  /** Stable machine-readable code; tests and callers switch on this, never on `message`. */
  readonly code: StoreErrorCode;
  /** HTTP status the admin API would answer with. */
  readonly status: number;
  /** Whether `message` may be shown to a client (status < 500). */
  readonly expose: boolean;

  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
    this.status = STATUS[code];
    this.expose = this.status < 500;
  }
}
