// Errors raised by the audit chain and writer.
// Stand-in until `NexusError` from `@nexus/protocol` lands; same shape (code, status,
// expose, cause), so swapping it is a change to this file only. Messages MUST NOT
// contain a secret, a token or raw request input.

/** Codes the audit module throws (a subset of the Nexus error table). */
export type AuditErrorCode =
  /** The record could not be made durable; the request MUST NOT be forwarded. */
  | 'audit_unavailable'
  /** A record cannot be canonicalised (non-finite number, undefined in an array, ...). */
  | 'internal_error';

const STATUS: Readonly<Record<AuditErrorCode, number>> = {
  audit_unavailable: 503,
  internal_error: 500,
};

/** An error with a stable `code`; callers map it to a problem response. */
export class AuditError extends Error {
  /** Stable machine-readable code; tests and callers switch on this, never on `message`. */
  readonly code: AuditErrorCode;
  /** HTTP status of the problem response. */
  readonly status: number;
  /** Whether `message` may be shown to a client (status < 500). */
  readonly expose: boolean;

  constructor(code: AuditErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditError';
    this.code = code;
    this.status = STATUS[code];
    this.expose = this.status < 500;
  }
}
