/**
 * Every request the node holds for approval, as the admin API (`/v1/approvals`, the
 * console) and a webhook approver's callback act on them. A single process's board is its
 * own queue; under `nexus up --workers N` each worker holds its own requests and the board
 * reaches the others through the primary (app/worker-approvals.ts), so the workers answer
 * as one node: whichever worker an operator's call reaches, the list shows every held
 * request and a decision reaches the worker that holds it. In a PostgreSQL cluster the
 * board is the store's (app/cluster-approvals.ts): every node's held requests.
 */
import type { Approver, ApprovalQueue, PendingApproval } from './queue.js';

/** A held request's webhook approver: what its callback is verified against. */
export interface HeldWebhook {
  /** The name (never the value) of the vault credential holding the HMAC key. */
  readonly secret: string;
  readonly ruleId: string;
}

/** The node's held requests, wherever they are held. */
export interface ApprovalBoard {
  /** Every held request of the node, oldest first. */
  list(): Promise<PendingApproval[]>;
  /**
   * Approves or denies a held request (once: the worker that holds it decides).
   *
   * @throws NexusError `not_found` (unknown, decided or ended), `forbidden` (not one of the
   *   rule's approvers), `internal_error` (a worker did not answer: nothing is assumed),
   *   `store_unavailable` (a cluster's store is unreachable: nothing is decided).
   */
  decide(
    id: string,
    approver: Approver,
    approve: boolean,
    approverName: string | undefined,
  ): Promise<PendingApproval>;
  /** The webhook of a held request's rule, for verifying its callback. */
  webhookOf(id: string): Promise<HeldWebhook | undefined>;
  /**
   * Decides a held request on its rule's webhook's word (the caller verified it).
   *
   * @throws NexusError `not_found` (unknown, decided or ended, or its rule has no webhook)
   */
  decideByWebhook(id: string, approver: Approver, approve: boolean): Promise<PendingApproval>;
}

/** The board of one process: its own queue. */
export function localBoard(queue: ApprovalQueue): ApprovalBoard {
  return {
    list: async () => queue.list(),
    decide: async (id, approver, approve, approverName) =>
      queue.decide(id, approver, approve, approverName),
    webhookOf: async (id) => queue.webhookOf(id),
    decideByWebhook: async (id, approver, approve) => queue.decideByWebhook(id, approver, approve),
  };
}
