/**
 * Admin API for requests held by `approve` policy rules: list them, approve or deny one.
 * The deciding operator is the operator token of the call (its name and id go into the
 * audit chain); a rule's `approvers` limits which token names may decide. Under
 * `nexus up --workers N` the board spans every worker, in a PostgreSQL cluster every node
 * (approvals/board.ts).
 */
import { NexusError } from '@nexus-proxy/protocol';
import type { ApprovalBoard } from '../approvals/board.js';

/** The caller of an admin route, from its operator token. */
export interface OperatorIdentity {
  readonly id: string;
  readonly name: string;
  /** What a rule's `approvers` match (admin/callers.ts `approverNameOf`); none: no list matches. */
  readonly approverName?: string;
}

export interface ApprovalRoute {
  readonly method: string;
  readonly path: string;
  readonly handler: (ctx: {
    params: Record<string, string>;
    operator: OperatorIdentity | undefined;
  }) => Promise<unknown>;
}

/** The routes over `board`; every one needs an operator token. */
export function approvalRoutes(board: ApprovalBoard | undefined): ApprovalRoute[] {
  const decide =
    (approve: boolean) =>
    async (ctx: { params: Record<string, string>; operator: OperatorIdentity | undefined }) => {
      if (board === undefined || ctx.operator === undefined) throw new NexusError('not_found');
      const view = await board.decide(
        ctx.params.id as string,
        { name: ctx.operator.name, token_id: ctx.operator.id },
        approve,
        ctx.operator.approverName,
      );
      return {
        approval: view,
        state: approve ? 'approved' : 'denied',
        approver: { name: ctx.operator.name, token_id: ctx.operator.id },
      };
    };
  return [
    {
      method: 'GET',
      path: '/v1/approvals',
      handler: async () => ({ approvals: (await board?.list()) ?? [] }),
    },
    { method: 'POST', path: '/v1/approvals/{id}/approve', handler: decide(true) },
    { method: 'POST', path: '/v1/approvals/{id}/deny', handler: decide(false) },
  ];
}
