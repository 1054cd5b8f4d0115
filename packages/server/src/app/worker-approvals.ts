/**
 * Requests held for approval under `nexus up --workers N`: the workers answer as one node.
 * A held request waits in the worker whose connection carries it (the agent's connection
 * is there, and so is the held body); an operator's `GET /v1/approvals`, `nexus approval
 * approve|deny` or a webhook's callback reaches any worker (the listeners are shared,
 * round-robin). The worker that receives the call acts on its own queue first and asks
 * the primary for the rest; the primary asks every other live worker (ipc-peer.ts) and
 * combines their answers:
 * - list: every worker's held requests, oldest first. A worker that does not answer fails
 *   the list (`internal_error`) rather than leaving its requests out silently.
 * - a decision (operator or webhook): sent to every other worker; only the one that holds
 *   the id has it, and its queue settles it once (a second decision finds nothing:
 *   `not_found`, as on a single node). Its refusal (`forbidden`) is the answer; when no
 *   worker holds the id the answer is `not_found`, unless a worker did not answer
 *   (`internal_error`: nothing is assumed, the operator may retry).
 * - a worker that dies takes its held requests with it (their agents' connections were
 *   in it); the primary no longer asks it, so their ids answer `not_found`.
 *
 * Asks: worker -> primary, topic `approvals.node`; primary -> worker, topic
 * `approvals.worker` (this worker's own queue only). Bodies are {@link ApprovalOp}: ids,
 * the deciding operator's name and token id, and answers carry the held requests' views
 * (never a header, query or body: queue.ts) and the name of a rule's webhook's vault
 * credential (never its value).
 */
import { NexusError, isNexusError } from '@nexus-proxy/protocol';
import type { ApprovalBoard, HeldWebhook } from '../approvals/board.js';
import type { Approver, ApprovalQueue, PendingApproval } from '../approvals/queue.js';
import { primaryPeer, type IpcPeer } from './ipc-peer.js';

/** One operation on held requests, as it travels between the processes. */
export type ApprovalOp =
  | { op: 'list' }
  | {
      op: 'decide';
      id: string;
      approver: Approver;
      approve: boolean;
      approverName: string | undefined;
    }
  | { op: 'webhook_of'; id: string }
  | { op: 'decide_by_webhook'; id: string; approver: Approver; approve: boolean };

/** What one queue answers to an {@link ApprovalOp}. */
type OpReply =
  { list: PendingApproval[] } | { decided: PendingApproval } | { webhook: HeldWebhook | undefined };

const NODE = 'approvals.node';
const WORKER = 'approvals.worker';
/** A worker's ask to the primary waits for the primary's asks to the others (5 s each). */
const NODE_TIMEOUT_MS = 10_000;

/** Applies `op` to one queue (this process's). */
function apply(queue: ApprovalQueue, op: ApprovalOp): OpReply {
  switch (op.op) {
    case 'list':
      return { list: queue.list() };
    case 'decide':
      return { decided: queue.decide(op.id, op.approver, op.approve, op.approverName) };
    case 'webhook_of':
      return { webhook: queue.webhookOf(op.id) };
    case 'decide_by_webhook':
      return { decided: queue.decideByWebhook(op.id, op.approver, op.approve) };
  }
}

const oldestFirst = (a: PendingApproval, b: PendingApproval) =>
  a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;

/**
 * In the primary: answers the asks of one worker (on its `peer`) by asking `others()`
 * (the peers of the other workers that listen) and combining their answers.
 */
export function answerApprovals(peer: IpcPeer, others: () => IpcPeer[]): void {
  peer.handle(NODE, async (body): Promise<OpReply> => {
    const op = body as ApprovalOp;
    const asks = others().map((p) => p.ask<OpReply>(WORKER, op));
    if (op.op === 'list') {
      // Every worker's, or none: a list that silently misses a worker's requests is wrong.
      const replies = await Promise.all(asks);
      return { list: replies.flatMap((r) => ('list' in r ? r.list : [])).sort(oldestFirst) };
    }
    const settled = await Promise.allSettled(asks);
    let silent = false;
    let refusal: unknown;
    for (const s of settled) {
      if (s.status === 'fulfilled') {
        if ('decided' in s.value) return s.value;
        if ('webhook' in s.value && s.value.webhook !== undefined) return s.value;
      } else if (!isNexusError(s.reason) || s.reason.code === 'internal_error') {
        silent = true;
      } else if (s.reason.code !== 'not_found') {
        refusal = s.reason;
      }
    }
    // The worker that holds the id refused (e.g. not one of the rule's approvers).
    if (refusal !== undefined) throw refusal;
    // A worker that did not answer may hold it: nothing is assumed.
    if (silent)
      throw new NexusError('internal_error', 'a worker did not answer about held requests');
    if (op.op === 'webhook_of') return { webhook: undefined };
    throw new NexusError('not_found', 'no pending approval with this id (decided or ended)');
  });
}

/**
 * In a worker: the board over its own `queue` and, through the primary (`peer`, the
 * worker's pipe to it), every other worker's. Also answers the primary's asks about this
 * worker's queue.
 */
export function workerApprovalBoard(
  queue: ApprovalQueue,
  peer: IpcPeer = primaryPeer(),
): ApprovalBoard {
  peer.handle(WORKER, (body) => apply(queue, body as ApprovalOp));
  const node = (op: ApprovalOp) => peer.ask<OpReply>(NODE, op, NODE_TIMEOUT_MS);
  /** This worker's queue first; the others' only when it does not hold the id. */
  const decided = async (op: ApprovalOp): Promise<PendingApproval> => {
    try {
      const local = apply(queue, op);
      if ('decided' in local) return local.decided;
    } catch (err) {
      if (!isNexusError(err) || err.code !== 'not_found') throw err;
    }
    const reply = await node(op);
    if (!('decided' in reply)) throw new NexusError('internal_error');
    return reply.decided;
  };
  return {
    async list() {
      const others = await node({ op: 'list' });
      return [...queue.list(), ...('list' in others ? others.list : [])].sort(oldestFirst);
    },
    decide: (id, approver, approve, approverName) =>
      decided({ op: 'decide', id, approver, approve, approverName }),
    async webhookOf(id) {
      const local = queue.webhookOf(id);
      if (local !== undefined) return local;
      const reply = await node({ op: 'webhook_of', id });
      return 'webhook' in reply ? reply.webhook : undefined;
    },
    decideByWebhook: (id, approver, approve) =>
      decided({ op: 'decide_by_webhook', id, approver, approve }),
  };
}
