/**
 * Errors raised by auth mechanics.
 *
 * `@nexus/protocol` has not published `NexusError` yet; until it does, mechanics throw this
 * local error with the same shape (stable `code`, HTTP `status`, `expose`). Swapping it for
 * `NexusError` is a change to this file only: every mechanic goes through the helpers below.
 */

/** Codes a mechanic may raise (a subset of the Nexus error table). */
export type MechanicErrorCode = 'credential_unavailable';

const STATUS: Readonly<Record<MechanicErrorCode, number>> = {
  credential_unavailable: 503,
};

/**
 * An error with a stable `code`. Messages name fields and mechanics, never a value.
 */
export class MechanicError extends Error {
  readonly code: MechanicErrorCode;
  readonly status: number;
  /** Whether the message may be shown to the caller (status < 500). */
  readonly expose: boolean;

  constructor(code: MechanicErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MechanicError';
    this.code = code;
    this.status = STATUS[code];
    this.expose = this.status < 500;
  }
}

/**
 * The credential (or one of its fields) cannot be used. `detail` MUST NOT contain a value.
 *
 * @example throw credentialUnavailable('credential "github" has no field "token"')
 */
export function credentialUnavailable(detail: string): MechanicError {
  return new MechanicError('credential_unavailable', detail);
}
