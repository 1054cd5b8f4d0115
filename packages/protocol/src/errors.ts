// Error model shared by every Nexus package: one error class with a stable code, an HTTP
// status and an RFC 9457 problem-details rendering. Messages never contain request input.

/** Every stable error code of the Nexus v1 profile. */
export type ErrorCode =
  | 'request_invalid'
  | 'path_invalid'
  | 'intent_invalid'
  | 'digest_missing'
  | 'digest_invalid'
  | 'digest_mismatch'
  | 'validation_failed'
  | 'method_override_refused'
  | 'mcp_invalid'
  | 'mcp_header_mismatch'
  | 'query_param_reserved'
  | 'lease_missing'
  | 'lease_invalid'
  | 'lease_expired'
  | 'lease_not_yet_valid'
  | 'lease_revoked'
  | 'signature_missing'
  | 'signature_invalid'
  | 'signature_expired'
  | 'replay_detected'
  | 'unauthorized'
  | 'enrollment_invalid'
  | 'connection_expired'
  | 'agent_disabled'
  | 'renewal_denied'
  | 'policy_denied'
  | 'delegation_too_wide'
  | 'service_not_delegated'
  | 'intent_not_delegated'
  | 'approval_denied'
  | 'approval_timeout'
  | 'forbidden'
  | 'role_forbidden'
  | 'host_unowned'
  | 'host_mismatch'
  | 'not_found'
  | 'service_unknown'
  | 'method_not_allowed'
  | 'conflict'
  | 'body_too_large'
  | 'headers_too_large'
  | 'request_timeout'
  | 'rate_limited'
  | 'agent_disconnected'
  | 'internal_error'
  | 'upstream_unreachable'
  | 'upstream_invalid'
  | 'credential_unavailable'
  | 'audit_unavailable'
  | 'store_busy'
  | 'store_unavailable'
  | 'replay_unavailable'
  | 'limits_unavailable'
  | 'upstream_timeout';

/** One row of the error table. */
export interface ErrorCodeInfo {
  readonly status: number;
  readonly title: string;
  readonly description: string;
}

const row = (status: number, title: string, description: string): ErrorCodeInfo =>
  Object.freeze({ status, title, description });

/** The error table (docs/dev/profile-decisions.md, "Error codes"): code -> status, title, meaning. */
export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorCodeInfo>> = Object.freeze({
  request_invalid: row(400, 'Request invalid', 'malformed request'),
  path_invalid: row(400, 'Path invalid', 'path escapes or is not normal'),
  intent_invalid: row(
    400,
    'Intent invalid',
    'Nexus-Intent missing or not a valid sf-string <= 512',
  ),
  digest_missing: row(400, 'Digest missing', 'body without Content-Digest'),
  digest_invalid: row(400, 'Digest invalid', 'Content-Digest malformed or algorithm not allowed'),
  digest_mismatch: row(400, 'Digest mismatch', 'digest does not match the body'),
  validation_failed: row(400, 'Validation failed', 'admin request body invalid'),
  method_override_refused: row(
    400,
    'Method override refused',
    'a _method or X-HTTP-Method-Override parameter in the query or body; send the real method',
  ),
  mcp_invalid: row(
    400,
    'MCP message invalid',
    'an MCP service got something other than one well-formed JSON-RPC message (batch, bad JSON, duplicate key, wrong method or path)',
  ),
  mcp_header_mismatch: row(
    400,
    'MCP header mismatch',
    'MCP-Protocol-Version, Mcp-Method or Mcp-Name is missing where required or disagrees with the body',
  ),
  query_param_reserved: row(
    400,
    'Query parameter reserved',
    'a query parameter whose name could be read as the one Nexus injects the credential into',
  ),
  lease_missing: row(401, 'Lease missing', 'no Workload-Identity-Token'),
  lease_invalid: row(
    401,
    'Lease invalid',
    'lease malformed, wrong typ/alg/kid/iss/aud/claims/cnf or bad signature',
  ),
  lease_expired: row(401, 'Lease expired', 'lease exp passed'),
  lease_not_yet_valid: row(401, 'Lease not yet valid', 'lease nbf in the future'),
  lease_revoked: row(401, 'Lease revoked', 'lease revoked (by lease, agent or all)'),
  signature_missing: row(401, 'Signature missing', 'no Signature or Signature-Input'),
  signature_invalid: row(
    401,
    'Signature invalid',
    'profile rule broken or signature does not verify',
  ),
  signature_expired: row(401, 'Signature expired', 'signature window over'),
  replay_detected: row(401, 'Replay detected', 'nonce already used'),
  unauthorized: row(401, 'Unauthorized', 'admin: missing or wrong operator token'),
  enrollment_invalid: row(401, 'Enrollment invalid', 'enrollment token unknown, used or expired'),
  connection_expired: row(
    401,
    'Connection expired',
    'an OAuth connection needs to be re-authorised',
  ),
  agent_disabled: row(403, 'Agent disabled', 'the agent is disabled'),
  renewal_denied: row(403, 'Renewal denied', 'renewal past the maximum lifetime'),
  policy_denied: row(403, 'Policy denied', 'no rule allows, or a rule denies'),
  delegation_too_wide: row(
    403,
    'Delegation too wide',
    'a sub-lease asked for a role or service the delegating lease does not have',
  ),
  service_not_delegated: row(
    403,
    'Service not delegated',
    "the service is not in the sub-lease's delegated services",
  ),
  intent_not_delegated: row(
    403,
    'Intent not delegated',
    "the intent does not match the sub-lease's delegated intent patterns",
  ),
  approval_denied: row(403, 'Approval denied', 'an operator denied the request held for approval'),
  approval_timeout: row(
    408,
    'Approval timeout',
    'the request held for approval was not approved in time',
  ),
  forbidden: row(403, 'Forbidden', 'admin: not allowed'),
  role_forbidden: row(
    403,
    'Role forbidden',
    "admin: the caller's console role (viewer, operator) does not allow this action",
  ),
  host_unowned: row(403, 'Host unowned', 'forward proxy: no service owns this host'),
  host_mismatch: row(421, 'Host mismatch', 'forward proxy: Host is not the tunnel host'),
  not_found: row(404, 'Not found', 'admin resource not found'),
  service_unknown: row(404, 'Service unknown', 'no such service'),
  method_not_allowed: row(405, 'Method not allowed', 'wrong method on an Authority/admin endpoint'),
  conflict: row(409, 'Conflict', 'admin: resource exists'),
  body_too_large: row(413, 'Body too large', 'body over the limit'),
  headers_too_large: row(431, 'Headers too large', 'header section over the limit'),
  request_timeout: row(408, 'Request timeout', 'the request was not received in time'),
  rate_limited: row(429, 'Rate limited', 'too many requests'),
  agent_disconnected: row(
    499,
    'Agent disconnected',
    'the agent closed its connection before the response was complete (audit only, never sent)',
  ),
  internal_error: row(500, 'Internal error', 'unexpected failure'),
  upstream_unreachable: row(502, 'Upstream unreachable', 'could not connect to the upstream'),
  upstream_invalid: row(502, 'Upstream invalid', 'upstream answered something we will not relay'),
  credential_unavailable: row(
    503,
    'Credential unavailable',
    "the service's credential is not set or cannot be used",
  ),
  audit_unavailable: row(
    503,
    'Audit unavailable',
    'the audit record could not be written; nothing forwarded',
  ),
  store_busy: row(
    503,
    'Store busy',
    'the database stayed locked by another connection; nothing changed, retry later',
  ),
  store_unavailable: row(
    503,
    'Store unavailable',
    "the node's database is unreachable, or its file was deleted or replaced; retry later",
  ),
  replay_unavailable: row(
    503,
    'Replay protection unavailable',
    'the shared replay cache (Redis or the database) could not record the nonce; nothing forwarded, retry re-signed',
  ),
  limits_unavailable: row(
    503,
    'Limits unavailable',
    'the shared limit counters (Redis) could not be reached; nothing forwarded, retry later',
  ),
  upstream_timeout: row(504, 'Upstream timeout', 'upstream too slow'),
});

/** Options of {@link NexusError}. */
export interface NexusErrorOptions {
  /** The underlying error, kept for logs; never rendered to clients. */
  cause?: unknown;
  /**
   * What failed, in words the agent and the operator can act on, rendered as the
   * problem's `detail` and audited, whatever the status (also >= 500, whose message is
   * never shown). Set deliberately, from server-chosen text and configuration names only:
   * MUST NOT contain a secret, a token, or raw request input (header values, path, query,
   * body, parameter values). E.g. `credential "github-token" is not set`,
   * `the upstream's host name did not resolve (DNS)`.
   */
  detail?: string;
}

/**
 * The one error type of Nexus. `code` is stable; `status` and `expose` come from the table.
 * MUST NOT be given a message that contains a secret, a token or raw request input.
 *
 * @example
 * throw new NexusError('lease_expired');
 */
export class NexusError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** True when the message may be shown to the client (status < 500). */
  readonly expose: boolean;
  override readonly cause: unknown;
  /** The safe detail (see {@link NexusErrorOptions.detail}), when one was set. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message?: string, options: NexusErrorOptions = {}) {
    const info = ERROR_CODES[code] ?? ERROR_CODES.internal_error;
    super(message ?? info.description);
    this.name = 'NexusError';
    this.code = code;
    this.status = info.status;
    this.expose = info.status < 500;
    this.cause = options.cause;
    this.detail = options.detail;
  }
}

/**
 * The detail of `err` that may be shown to a client and written to the audit: its
 * explicit safe detail, else (status < 500) its message, else the table description.
 */
export function safeDetail(err: NexusError): string {
  return err.detail ?? (err.expose ? err.message : ERROR_CODES[err.code].description);
}

/** True when `value` is a {@link NexusError} (also across module copies, by shape). */
export function isNexusError(value: unknown): value is NexusError {
  if (value instanceof NexusError) return true;
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { name?: unknown; code?: unknown };
  return v.name === 'NexusError' && typeof v.code === 'string' && v.code in ERROR_CODES;
}

/** An RFC 9457 problem-details object as Nexus sends it (`application/problem+json`). */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  request_id: string;
}

/**
 * Renders any thrown value as RFC 9457 problem details. `detail` is {@link safeDetail}:
 * the explicit safe detail when set; otherwise non-Nexus errors and errors with status
 * >= 500 get the table description only (their message is never exposed).
 */
export function problemDetails(err: unknown, requestId: string): ProblemDetails {
  const e = isNexusError(err) ? err : new NexusError('internal_error', undefined, { cause: err });
  const info = ERROR_CODES[e.code];
  return {
    type: `urn:nexus:problem:${e.code}`,
    title: info.title,
    status: info.status,
    code: e.code,
    detail: safeDetail(e),
    request_id: requestId,
  };
}
