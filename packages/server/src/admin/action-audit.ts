/**
 * The audit record of an admin action (revoke a lease, disable an agent, set a credential...):
 * `kind: "authority"`, the `action`, what it acted on, and the `actor` (operator token or
 * person) that ordered it.
 *
 * MUST: the record is durable before the action runs; an action whose record cannot be
 * written is not carried out (`audit_unavailable`). MUST NOT: the record hold a body (a
 * credential value, a token): only names from the route.
 */
import type { AuditRecord } from '../audit/record.js';
import { auditTime } from '../audit/record.js';
import type { Caller } from './callers.js';

/** The `actor` of an admin action's record. */
export function actorOf(caller: Caller): NonNullable<AuditRecord['actor']> {
  return {
    type: caller.type,
    name: caller.name,
    id: caller.id,
    role: caller.role,
    ...(caller.issuer === undefined ? {} : { issuer: caller.issuer }),
  };
}

/** Builds the record of `action` on `method path` (path parameters decoded in `params`). */
export function actionRecord(input: {
  action: string;
  caller: Caller;
  requestId: string;
  method: string;
  path: string;
  params: Record<string, string>;
  policyHash: string;
  now: number;
}): AuditRecord {
  const p = input.params;
  return {
    v: 1,
    kind: 'authority',
    time: auditTime(input.now),
    request_id: input.requestId,
    agent: p['name'] !== undefined && input.action.startsWith('agent.') ? p['name'] : '',
    lease_id: input.action === 'lease.revoke' ? (p['id'] ?? '') : '',
    service: p['service'] ?? '',
    method: input.method,
    path: input.path,
    intent: '',
    decision: 'allow',
    rule_ids: [],
    policy_hash: input.policyHash,
    action: input.action,
    actor: actorOf(input.caller),
  };
}
