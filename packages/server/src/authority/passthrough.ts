/**
 * `POST /v1/agent/passthrough` (docs/spec §12.6, issue 11): `nexus run`'s sidecar asks
 * before it opens a blind tunnel to a host no service owns. The node decides from the
 * `passthrough:` rules of nexus.yaml and writes a `passthrough` audit record, durably,
 * before it answers: a tunnel the node did not record is a tunnel the sidecar does not
 * open (it holds agent rights only and cannot write the audit trail itself).
 *
 * MUST: deny when no rule matches (`host_unowned`), and audit the denial too. MUST: fail
 * closed when the audit write fails (`audit_unavailable`, no allow answer).
 */
import {
  NexusError,
  checkDelegatedRequest,
  delegatedServices,
  isNexusError,
  safeDetail,
  type VerifiedRequest,
} from '@nexus-proxy/protocol';
import type { AuditWriter } from '../audit/writer.js';
import { passthroughRuleFor, type PassthroughRule } from '../config/passthrough.js';
import { rolesHeld } from './authority.js';

/** Longest host name accepted in a request body (DNS: 253). */
const MAX_HOST = 253;
const HOST_RE = /^[a-z0-9.-]+$/;
const DENIED = 'no service owns this host and no passthrough rule lets this agent tunnel to it';

export interface PassthroughDeps {
  readonly rules: () => readonly PassthroughRule[];
  /** The agent's roles now (undefined: unknown agent); a lease's role taken away no longer counts. */
  readonly agentRoles: (agent: string) => readonly string[] | undefined;
  readonly audit: Pick<AuditWriter, 'append'>;
  readonly clock: () => number;
}

/** The body of a passthrough request, validated. */
export interface PassthroughTarget {
  readonly host: string;
  readonly port: number;
}

/** Parses `{ "host": "...", "port": 443 }`; `validation_failed` otherwise. */
export function parsePassthroughBody(text: string): PassthroughTarget {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new NexusError('validation_failed', 'body is not JSON');
  }
  const o = v as { host?: unknown; port?: unknown } | null;
  const host = typeof o?.host === 'string' ? o.host.toLowerCase() : undefined;
  const port = o?.port;
  if (host === undefined || host.length > MAX_HOST || !HOST_RE.test(host))
    throw new NexusError('validation_failed', 'host must be a host name or IPv4 address');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new NexusError('validation_failed', 'port must be an integer from 1 to 65535');
  return { host, port };
}

/**
 * Decides and audits one tunnel. Resolves with the allowing rule's id; throws
 * `host_unowned` (after auditing the denial) or `audit_unavailable`.
 */
export function createPassthroughDecider(deps: PassthroughDeps) {
  return async function decide(
    verified: VerifiedRequest,
    target: PassthroughTarget,
    requestId: string,
  ): Promise<string> {
    const roles = rolesHeld(verified.claims.scope, deps.agentRoles(verified.agent) ?? []);
    // MUST: a sub-lease never reaches more than its grant (spec §12.5). A blind tunnel
    // belongs to no service, so one narrowed by service gets none; its intent patterns
    // apply to the tunnel's intent as to a proxied request's.
    let refused: NexusError | undefined;
    try {
      if (delegatedServices(verified.claims) !== undefined) {
        throw new NexusError('service_not_delegated', 'a blind tunnel belongs to no service');
      }
      checkDelegatedRequest(verified.claims, '', verified.intent);
    } catch (err) {
      if (!isNexusError(err)) throw err;
      refused = err;
    }
    const rule =
      refused === undefined
        ? passthroughRuleFor(deps.rules(), verified.agent, roles, target.host, target.port)
        : undefined;
    try {
      await deps.audit.append({
        v: 1,
        kind: 'passthrough',
        time: new Date(deps.clock()).toISOString(),
        request_id: requestId,
        agent: verified.agent,
        lease_id: verified.leaseId,
        act: verified.claims.act?.sub,
        task: verified.claims.nexus_task,
        host: target.host,
        port: target.port,
        intent: verified.intent,
        decision: rule === undefined ? 'deny' : 'allow',
        rule_ids: rule === undefined ? [] : [rule.id],
        ...(refused !== undefined
          ? { error_code: refused.code, error_detail: safeDetail(refused) }
          : rule === undefined
            ? { error_code: 'host_unowned', error_detail: DENIED }
            : {}),
      });
    } catch (err) {
      throw new NexusError('audit_unavailable', undefined, { cause: err });
    }
    if (refused !== undefined) throw refused;
    if (rule === undefined) throw new NexusError('host_unowned', DENIED);
    return rule.id;
  };
}
