/**
 * Requests held by `approve` rules across the nodes of a PostgreSQL cluster (issue 13): the
 * nodes answer as one. A held request waits in the node its agent's connection reached
 * (the connection and the held body are there); the store's `held_approvals` table lets
 * any node list and decide it:
 *
 * - hold: once the request is durably audited as pending, the holder writes its row (the
 *   view `GET /v1/approvals` shows, its node id, its expiry, and `alive_until`, which the
 *   holder keeps ahead of the clock while it lives). A node killed without a stop leaves
 *   its rows behind, but they leave the list within {@link ALIVE_MS}.
 * - list: the live, undecided, unexpired rows of every node, oldest first.
 * - decide (operator, webhook answer or callback, on any node): the rule's `approvers`
 *   are checked against the row's view, then the decision is written by one conditional
 *   UPDATE (`WHERE decision IS NULL AND alive_until > now AND expires_at > now`): of two
 *   decisions one wins, the other answers `not_found`, as on one node. The store decides,
 *   not timing. A notice on the cluster's change channel (app/cluster-sync.ts: Redis
 *   pub/sub, else PostgreSQL NOTIFY) tells the holder at once; the holder also reads its
 *   decided rows every {@link POLL_MS} while it holds something (a lost notice).
 * - apply: the holder takes its decided rows (DELETE ... RETURNING: each once) and
 *   settles them; the pipeline then forwards (approved, after re-checking the lease and
 *   the agent) or refuses (denied), and audits it, as on one node.
 * - the holder's own ends (timeout, agent gone, SIGTERM) delete the row first: a decision
 *   written before wins (the operator was told it holds), else the request ends as on one
 *   node (`approval_timeout`, `agent_disconnected`). The store unreachable: it ends as its
 *   own reason says, nothing is forwarded, and its row is deleted once the store is back.
 * - the holder's store work runs one operation at a time, so a decision taken and an own
 *   end never both settle the same request, and an end never overtakes the row's write.
 *
 * Fail closed: with the store down a request is not held (503 `store_unavailable`, not
 * forwarded), and list and decide calls answer 503 `store_unavailable`.
 *
 * Clocks: expiry and liveness compare one node's times with another's; the nodes' clocks
 * are assumed within a few seconds of each other (NTP), as for leases.
 *
 * MUST: a row holds the request's view only (identity, route, intent, rule, times, never
 * a header value, the query, the body or a credential) and the NAME of the rule's
 * webhook's vault credential, never its value.
 */
import { NexusError } from '@nexus-proxy/protocol';
import type { ApprovalBoard } from '../approvals/board.js';
import type {
  ApprovalOutcome,
  ApprovalQueue,
  ApprovalSharing,
  Approver,
  PendingApproval,
} from '../approvals/queue.js';
import type { WebhookSettings } from '../approvals/webhook.js';
import type { HeldApprovalRow, HeldDecision, Store } from '../store/store.js';
import { errorSummary } from '../proxy/pipeline.js';
import type { Logger } from '../util/logger.js';

/** How long a holder's rows stay listed after its last sign of life. */
export const ALIVE_MS = 10_000;
/** How often a holder renews its rows' `alive_until` (well within {@link ALIVE_MS}). */
const TOUCH_MS = 3_000;
/** How often a holder reads its decided rows when no notice came. */
export const POLL_MS = 1_000;

/** Options of {@link ClusterApprovals}. */
export interface ClusterApprovalsOptions {
  readonly store: Store;
  /** This node's id on the change channel (app/cluster-sync.ts `nodeId`). */
  readonly nodeId: string;
  readonly clock: () => number;
  readonly logger: Logger;
  /** Tells `node` that one of its held requests was decided. Never throws. */
  readonly notify: (node: string) => Promise<void>;
  /** Overrides {@link POLL_MS} (tests). */
  readonly pollMs?: number;
}

const NOT_FOUND = () =>
  new NexusError('not_found', 'no pending approval with this id (decided or ended)');

/** The outcome a stored decision stands for. */
function outcomeOf(d: HeldDecision): ApprovalOutcome & { state: 'approved' | 'denied' } {
  const approver = JSON.parse(d.approver) as Approver;
  return d.approved ? { state: 'approved', approver } : { state: 'denied', approver };
}

/**
 * A node's share of the cluster's held requests: the queue's {@link ApprovalSharing}
 * and the {@link ApprovalBoard} of the admin API and webhook callbacks.
 *
 * @example
 * const cluster = new ClusterApprovals({ store, nodeId: sync.nodeId, clock, logger, notify });
 * const queue = new ApprovalQueue({ clock, sharing: cluster });
 * const board = cluster.board(queue);
 */
export class ClusterApprovals implements ApprovalSharing {
  readonly #o: ClusterApprovalsOptions;
  #queue: ApprovalQueue | undefined;
  /** The holder's store work, one operation at a time (see the header). */
  #chain: Promise<unknown> = Promise.resolve();
  readonly #timers: NodeJS.Timeout[] = [];
  /**
   * Rows of requests this node ended while the store was unreachable: deleted when it is
   * back (retried with the poll), so no other node decides a request nobody holds.
   */
  readonly #orphans = new Set<string>();
  #warned = false;

  constructor(options: ClusterApprovalsOptions) {
    this.#o = options;
    const poll = setInterval(() => {
      this.#forgetOrphans();
      this.#whileHolding(() => this.takeDecisions());
    }, options.pollMs ?? POLL_MS);
    const touch = setInterval(
      () =>
        this.#whileHolding(() =>
          this.#serial(() =>
            this.#o.store.touchHeldApprovals(this.#o.nodeId, this.#o.clock() + ALIVE_MS),
          ),
        ),
      TOUCH_MS,
    );
    poll.unref();
    touch.unref();
    this.#timers.push(poll, touch);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Runs `fn` when this node holds shared requests; a failure is logged once per outage. */
  #whileHolding(fn: () => Promise<unknown>): void {
    if (this.#queue === undefined || this.#queue.sharedCount() === 0) return;
    fn().then(
      () => {
        if (this.#warned) this.#o.logger.info('held approvals readable again');
        this.#warned = false;
      },
      (err: unknown) => {
        if (this.#warned) return;
        this.#warned = true;
        this.#o.logger.warn(
          { err: errorSummary(err) },
          'held approvals unreadable; decisions wait until the store is back',
        );
      },
    );
  }

  put(view: PendingApproval, webhook: WebhookSettings | undefined): Promise<void> {
    const now = this.#o.clock();
    const row: HeldApprovalRow = {
      id: view.id,
      node: this.#o.nodeId,
      view: JSON.stringify(view),
      ...(webhook === undefined ? {} : { webhookSecret: webhook.secret }),
      createdAt: Date.parse(view.created_at),
      expiresAt: Date.parse(view.expires_at),
      aliveUntil: now + ALIVE_MS,
    };
    return this.#serial(() => this.#o.store.putHeldApproval(row, now));
  }

  end(id: string, own: ApprovalOutcome): Promise<ApprovalOutcome> {
    return this.#serial(async () => {
      let decided: HeldDecision | undefined;
      try {
        decided = await this.#o.store.endHeldApproval(id);
      } catch (err) {
        // The request ends as its own reason says (never approved); its row goes later.
        this.#orphans.add(id);
        throw err;
      }
      return decided === undefined ? own : outcomeOf(decided);
    });
  }

  #forgetOrphans(): void {
    if (this.#orphans.size === 0) return;
    void this.#serial(async () => {
      for (const id of [...this.#orphans]) {
        await this.#o.store.endHeldApproval(id);
        this.#orphans.delete(id);
      }
    }).catch(() => undefined);
  }

  /** Takes this node's decided rows and settles their requests (a notice, or the poll). */
  takeDecisions(): Promise<void> {
    return this.#serial(async () => {
      const taken = await this.#o.store.takeHeldDecisions(this.#o.nodeId);
      for (const d of taken) {
        if (this.#queue?.applyDecision(d.id, outcomeOf(d)) !== true) {
          // Ended here while the store was unreachable: the decision came too late.
          this.#o.logger.warn(
            { approval_id: d.id },
            'a decision arrived for a held request this node had already ended',
          );
        }
      }
    });
  }

  /** A notice for `node` arrived on the change channel. */
  noticed(node: string): void {
    if (node !== this.#o.nodeId) return;
    this.#whileHolding(() => this.takeDecisions());
  }

  /** The board over every node's held requests; `queue` is this node's. */
  board(queue: ApprovalQueue): ApprovalBoard {
    this.#queue = queue;
    const { store, clock } = this.#o;
    const decide = async (
      id: string,
      approver: Approver,
      approve: boolean,
      allowed: (row: HeldApprovalRow, view: PendingApproval) => void,
    ): Promise<PendingApproval> => {
      const row = await store.getHeldApproval(id, clock());
      if (row === undefined) throw NOT_FOUND();
      const view = JSON.parse(row.view) as PendingApproval;
      allowed(row, view);
      const decided = await store.decideHeldApproval(
        id,
        { approved: approve, approver: JSON.stringify(approver) },
        clock(),
      );
      if (decided === undefined) throw NOT_FOUND();
      if (decided.node === this.#o.nodeId) {
        // Held here: applied at once (a failure leaves it to the poll).
        this.takeDecisions().catch(() => undefined);
      } else {
        await this.#o.notify(decided.node);
      }
      return view;
    };
    return {
      list: async () =>
        (await store.listHeldApprovals(clock())).map((r) => JSON.parse(r.view) as PendingApproval),
      decide: (id, approver, approve, approverName) =>
        decide(id, approver, approve, (_row, view) => {
          const names = view.approvers;
          if (names !== undefined && (approverName === undefined || !names.includes(approverName)))
            throw new NexusError('forbidden', 'this operator is not an approver of the rule');
        }),
      async webhookOf(id) {
        const row = await store.getHeldApproval(id, clock());
        if (row?.webhookSecret === undefined) return undefined;
        const view = JSON.parse(row.view) as PendingApproval;
        return { secret: row.webhookSecret, ruleId: view.rule_id };
      },
      decideByWebhook: (id, approver, approve) =>
        decide(id, approver, approve, (row) => {
          if (row.webhookSecret === undefined) throw NOT_FOUND();
        }),
    };
  }

  /** Stops the timers (the node is stopping, after its held requests ended). */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    await this.#chain;
  }
}
