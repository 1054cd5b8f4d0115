/**
 * Errors raised by auth mechanics: `NexusError` from `@nexus-proxy/protocol`, built through the
 * helper below so that every mechanic fails the same way (stable code, no value in the text).
 */
import { NexusError } from '@nexus-proxy/protocol';

/**
 * The credential (or one of its fields) cannot be used: `credential_unavailable` (503).
 * `detail` names the credential and field; it MUST NOT contain a value. It is the problem's
 * `detail` the agent receives and the audit record's `error_detail`, so an operator knows
 * what to fix.
 *
 * @example throw credentialUnavailable('credential "github" has no field "token"')
 */
export function credentialUnavailable(detail: string, cause?: unknown): NexusError {
  return new NexusError('credential_unavailable', detail, { detail, cause });
}
