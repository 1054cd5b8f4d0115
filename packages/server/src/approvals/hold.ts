/**
 * The pipeline's side of approval: audit the request as pending (durably, before it is
 * held), hold it, audit how it ended with the approver's identity, and on approval check
 * that the lease and the agent are still good (a lease revoked or an agent disabled while
 * the request waited MUST NOT be forwarded). In a PostgreSQL cluster the held request is
 * shared through the store before anyone hears of it (queue.ts `share`).
 */
import { NexusError, type ErrorCode } from '@nexus-proxy/protocol';
import type { ApprovalSettings } from '../policy/rule-schema.js';
import type { AuditRecord } from '../audit/record.js';
import type { ApprovalOutcome, ApprovalQueue, PendingApproval } from './queue.js';
import type { HeldBody } from './webhook.js';

export interface HoldRequest {
  readonly queue: ApprovalQueue | undefined;
  readonly approval: { readonly ruleId: string } & ApprovalSettings;
  readonly view: Omit<
    PendingApproval,
    'id' | 'created_at' | 'expires_at' | 'rule_id' | 'approvers'
  >;
  /** Appends an `approval` audit record (durable when it resolves). */
  readonly record: (approval: NonNullable<AuditRecord['approval']>) => Promise<unknown>;
  /** Called when the agent's connection closes: the hold is given up. */
  readonly onClose: (abandon: () => void) => void;
  /** Throws when the request may no longer be forwarded (lease revoked, agent disabled). */
  readonly recheck: () => void;
  /** The verified body, for a webhook that asks for it (`include_body`). */
  readonly body?: HeldBody;
}

const REFUSALS: Record<Exclude<ApprovalOutcome['state'], 'approved'>, [ErrorCode, string]> = {
  denied: ['approval_denied', 'an operator denied the request'],
  timeout: ['approval_timeout', 'no operator approved the request in time'],
  stopped: ['approval_timeout', 'the node stopped before the request was approved'],
  abandoned: [
    'agent_disconnected',
    'the agent closed its connection while the request waited for approval',
  ],
};

/**
 * Holds one request for approval.
 *
 * @returns undefined when approved (forward it), else the refusal to answer with.
 */
export async function awaitApproval(h: HoldRequest): Promise<NexusError | undefined> {
  // Fail closed: a node without an approval queue cannot hold, so it does not forward.
  if (h.queue === undefined) {
    return new NexusError('policy_denied', undefined, { detail: 'approval is not available' });
  }
  const hold = h.queue.hold(
    {
      ...h.view,
      rule_id: h.approval.ruleId,
      ...(h.approval.approvers === undefined ? {} : { approvers: h.approval.approvers }),
    },
    h.approval.timeoutMs,
    h.approval.webhook,
    h.body,
  );
  try {
    await h.record({
      id: hold.id,
      state: 'pending',
      rule_id: h.approval.ruleId,
      timeout_ms: h.approval.timeoutMs,
    });
  } catch (err) {
    hold.abandon();
    throw new NexusError('audit_unavailable', undefined, { cause: err });
  }
  // A cluster's nodes see it (app/cluster-approvals.ts); fail closed: a request no other
  // node can see or decide is not held (the store is down: nothing is forwarded).
  try {
    await h.queue.share(hold.id);
  } catch (err) {
    hold.abandon();
    throw new NexusError('store_unavailable', undefined, { cause: err });
  }
  h.onClose(hold.abandon);
  // Durable as pending: now the rule's webhook (if any) may hear of it.
  h.queue.announce(hold.id);
  const outcome = await hold.outcome;
  const approver = 'approver' in outcome ? { approver: outcome.approver } : {};
  try {
    await h.record({ id: hold.id, state: outcome.state, rule_id: h.approval.ruleId, ...approver });
  } catch (err) {
    throw new NexusError('audit_unavailable', undefined, { cause: err });
  }
  if (outcome.state === 'approved') {
    h.recheck();
    return undefined;
  }
  const [code, detail] = REFUSALS[outcome.state];
  return new NexusError(code, undefined, { detail });
}
