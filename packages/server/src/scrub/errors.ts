// Errors raised by the response scrubber.
// Stand-in until `NexusError` from `@nexus/protocol` lands; same shape (code, status,
// expose, cause), so swapping it is a change to this file only. Messages MUST NOT
// contain a secret, a token or raw upstream content.

/** Codes the scrubber throws (a subset of the Nexus error table). */
export type ScrubErrorCode =
  /** The upstream response cannot be scanned (unknown or stacked encoding, corrupt or oversized body). */
  | 'upstream_invalid'
  /** A secret cannot be registered for redaction (too short, empty). */
  | 'validation_failed';

const STATUS: Readonly<Record<ScrubErrorCode, number>> = {
  upstream_invalid: 502,
  validation_failed: 400,
};

/** An error with a stable `code`; callers map it to a problem response. */
export class ScrubError extends Error {
  /** Stable machine-readable code; tests and callers switch on this, never on `message`. */
  readonly code: ScrubErrorCode;
  /** HTTP status of the problem response. */
  readonly status: number;
  /** Whether `message` may be shown to a client (status < 500). */
  readonly expose: boolean;

  constructor(code: ScrubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ScrubError';
    this.code = code;
    this.status = STATUS[code];
    this.expose = this.status < 500;
  }
}
