// The audit record written for every proxied request (and for Authority actions).
// Records are hashed as RFC 8785 canonical JSON, so field names are the stable wire form
// (snake_case) and optional fields are omitted, never null.
//
// Security invariant: a record MUST NOT contain a credential, a token derived from one,
// a query string (it may carry secrets), a request or response body, or a header value
// other than the ones named below.
import { createHash } from 'node:crypto';
import type { ChainRecord } from './chain.js';
import type { McpAuditFields } from '../mcp/gateway.js';

/**
 * Record kinds: the request decision, its outcome, Authority actions, and the steps of a
 * request held for approval (pending, then approved, denied, timeout, abandoned, stopped),
 * and the node's decision on a blind tunnel `nexus run` asked for (`passthrough`: `host`,
 * `port`, no service, method or path; authority/passthrough.ts).
 */
export type AuditKind = 'request' | 'outcome' | 'authority' | 'approval' | 'passthrough';

/**
 * One audit record. A proxied request leaves a `request` record (written, durably, before
 * anything is forwarded or denied) and, when it was forwarded, an `outcome` record with
 * the same `request_id`.
 */
export interface AuditRecord extends ChainRecord {
  /** Record format version. */
  v: 1;
  kind: AuditKind;
  /** When the event happened, ISO 8601 UTC with milliseconds (`new Date(ms).toISOString()`). */
  time: string;
  /** The proxy's id for the request (also in the problem response's `request_id`). */
  request_id: string;
  /** The agent URI (the lease `sub`), e.g. `nexus://example.org/agent/triage-bot`. */
  agent: string;
  /** The lease id (`jti`). */
  lease_id: string;
  /** On whose behalf the agent acts (the lease `act.sub`, RFC 8693), when set. */
  act?: string;
  /**
   * A sub-lease's delegation chain: the lease ids it was delegated from (its
   * `nexus_delegation`), root first; `act` names the immediate delegator (spec §12.5).
   */
  delegation?: string[];
  /** The task id (the lease `nexus_task`), when set. */
  task?: string;
  /** The service name from the route. */
  service: string;
  /** HTTP method as received. */
  method: string;
  /** The normalised request path after the service, WITHOUT the query (see {@link pathWithoutQuery}). */
  path: string;
  /** The declared purpose (`Nexus-Intent`), at most 512 printable ASCII characters. */
  intent: string;
  /** The policy decision. */
  decision: 'allow' | 'deny';
  /** Ids of the policy rules that decided (the allowing rule, or the denying ones; empty: default deny). */
  rule_ids: string[];
  /** Hash of the policy version in force. */
  policy_hash: string;
  /** The credential injected (name and vault version), never its value. */
  credential?: { name: string; version: number };
  /** `outcome`: the upstream's HTTP status. */
  upstream_status?: number;
  /** Request body bytes forwarded upstream. */
  bytes_in?: number;
  /** `outcome`: response body bytes sent to the agent (after scrubbing). */
  bytes_out?: number;
  /** `outcome`: total time from receipt to the last response byte, in ms. */
  duration_ms?: number;
  /** `outcome`: number of redacted regions in the response headers and body. */
  redactions?: number;
  /** The Nexus error code when the request failed (e.g. `policy_denied`, `upstream_timeout`). */
  error_code?: string;
  /**
   * With `error_code`: what failed, the problem's `detail` as the agent received it (e.g.
   * `credential "github-token" is not set`, `the upstream refused the connection`). Text
   * chosen by Nexus and configuration names only: MUST NOT hold a secret or raw request
   * input. Absent from records written before it existed (and omitted when unset, like
   * every optional field, so their hashes are unchanged).
   */
  error_detail?: string;
  /**
   * The request's proof, so the record can be re-verified offline: the `Signature-Input`
   * and `Signature` header values and the hash of the lease JWT they were made under
   * ({@link leaseHash}); the lease itself is `lease_id`, whose store row holds the agent's
   * public key (spec §8). Records written before issue 14 hold the JWT itself as `lease`
   * (~700 bytes per record, twice per request); their hashes are unchanged.
   */
  signature?: { input: string; value: string; lease_hash?: string; lease?: string };
  /**
   * A request to a service of kind `mcp`: the JSON-RPC method, the tool or prompt name or
   * resource URI (agent input like `path`), a digest of the arguments (never the
   * arguments), and in the outcome record what the response was (docs/mcp.md, "Audit").
   */
  mcp?: McpAuditFields;
  /**
   * A WebSocket upgrade (docs/agents.md, "WebSockets"): `{}` in the request record; in the
   * outcome record, the messages relayed each way (`messages_in`: agent to upstream), the
   * close code the stream ended with (absent: none was received) and who ended it
   * (`agent`, `upstream`, or `nexus`: a revoked or expired lease, a message over the bound,
   * the node stopping). Byte counts are `bytes_in` and `bytes_out` (message payloads).
   */
  websocket?: {
    messages_in?: number;
    messages_out?: number;
    close_code?: number;
    closed_by?: 'agent' | 'upstream' | 'nexus';
  };
  /**
   * `authority`: what happened: `lease.issue`, `lease.renew`, or an admin action such as
   * `lease.revoke`, `agent.disable`, `credential.set`, `config.reload` (admin/callers.ts
   * lists those).
   */
  action?: string;
  /**
   * `authority`: who ordered the action: an operator token (its name and id, role `admin`)
   * or a person logged in to the console with OIDC (email or username, `sub`, issuer, role).
   */
  actor?: {
    type: 'operator_token' | 'person';
    name: string;
    id: string;
    role: string;
    issuer?: string;
  };
  /**
   * `approval`: one step of a request held by an `approve` rule: its approval id, the state
   * (`pending`, `approved`, `denied`, `timeout`, `abandoned`, `stopped`), the rule, the
   * hold's timeout (pending) and who decided (the operator token's name and id).
   */
  approval?: {
    id: string;
    state: string;
    rule_id: string;
    timeout_ms?: number;
    approver?: { name: string; token_id: string };
  };
}

/**
 * The path without its query string or fragment: query parameters may carry secrets
 * and MUST NOT be audited.
 *
 * @example pathWithoutQuery('/repos/a/b/issues?page=2') // '/repos/a/b/issues'
 */
export function pathWithoutQuery(path: string): string {
  const q = path.search(/[?#]/);
  return q === -1 ? path : path.slice(0, q);
}

/**
 * The audit record's `signature.lease_hash`: base64url (no padding) of the SHA-256 of the
 * lease JWT's compact serialisation, as received.
 *
 * @example leaseHash('eyJhbGciOi...') // '3q2-7w...' (43 characters)
 */
export function leaseHash(lease: string): string {
  return createHash('sha256').update(lease, 'latin1').digest('base64url');
}

/** The last whole second {@link auditTime} formatted, and its text up to the milliseconds. */
let isoSecond = NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`: the record `time` form. The text up to the seconds is
 * formatted once per second: `toISOString` costs microseconds, twice per request (issue 14).
 */
export function auditTime(ms: number): string {
  if (!Number.isInteger(ms) || Math.abs(ms) > 8.64e15) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    // Every toISOString ends in `.sssZ`, whatever the year's form.
    isoPrefix = new Date(second * 1000).toISOString().slice(0, -4);
    isoSecond = second;
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}
