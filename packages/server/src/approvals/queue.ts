/**
 * Requests held for a human's approval (`approve:` policy rules, issue 15). The pipeline
 * holds a verified, policy-matched request here and waits; an operator approves or denies
 * it through the admin API (`nexus approval approve|deny`), or its timeout ends it.
 *
 * The held request is the one that was verified: on approval the pipeline forwards exactly
 * those bytes (no re-signing, and its nonce was recorded on arrival, so a copy cannot be
 * replayed). Pending approvals live in this process's memory: a node that stops ends them
 * (`approval_timeout`, detail: the node stopped), and the agent retries with a new request.
 * In a PostgreSQL cluster the queue also shares each held request ({@link ApprovalSharing},
 * app/cluster-approvals.ts): any node lists and decides it, and an end of the holder's own
 * (timeout, agent gone, node stopping) first asks the store whether a decision won.
 *
 * MUST: a pending approval's view holds the request's identity, route and intent (what an
 * approver needs to decide), never a header value, the query, the body or a credential.
 */
import { NexusError } from '@nexus-proxy/protocol';
import { randomId } from '../util/ids.js';
import type { HeldBody, WebhookSettings } from './webhook.js';

/** Who decided: the operator token's name and id. */
export interface Approver {
  readonly name: string;
  readonly token_id: string;
}

/** A held request as operators see it (`GET /v1/approvals`). */
export interface PendingApproval {
  readonly id: string;
  readonly request_id: string;
  readonly agent: string;
  readonly lease_id: string;
  readonly act?: string;
  readonly service: string;
  readonly method: string;
  readonly path: string;
  readonly intent: string;
  readonly rule_id: string;
  /** Operator token names that may decide; absent: any operator. */
  readonly approvers?: readonly string[];
  readonly created_at: string;
  readonly expires_at: string;
}

/** How a held request ended. */
export type ApprovalOutcome =
  | { readonly state: 'approved'; readonly approver: Approver }
  | { readonly state: 'denied'; readonly approver: Approver }
  | { readonly state: 'timeout' }
  | { readonly state: 'abandoned' }
  | { readonly state: 'stopped' };

/**
 * Where a cluster's nodes see this node's held requests (app/cluster-approvals.ts). The
 * decision written in the store is the one that holds: a node that decided answered the
 * operator already, so the holder applies it even when its own end (timeout, agent gone,
 * node stopping) comes at the same time.
 */
export interface ApprovalSharing {
  /** Makes a held request visible to every node. Throws when the store is unreachable. */
  put(view: PendingApproval, webhook: WebhookSettings | undefined): Promise<void>;
  /**
   * The holder ends a shared request for its `own` reason: the outcome that holds (a
   * decision written first wins; the store unreachable: `own`, nothing is forwarded).
   */
  end(id: string, own: ApprovalOutcome): Promise<ApprovalOutcome>;
}

/** One held request: its id, how it ends, and a way to give it up (the agent left). */
export interface Hold {
  readonly id: string;
  readonly outcome: Promise<ApprovalOutcome>;
  abandon(): void;
}

interface Entry {
  view: PendingApproval;
  settle: (o: ApprovalOutcome) => void;
  timer: NodeJS.Timeout;
  /** The rule's webhook approver, if it has one (approvals/webhook.ts). */
  webhook?: WebhookSettings;
  /** The request body, kept only for a webhook with `include_body`. */
  body?: HeldBody;
  /** Shared with the cluster ({@link ApprovalSharing}): its own ends ask the store first. */
  shared: boolean;
}

export interface ApprovalQueueOptions {
  readonly clock: () => number;
  /** Requests held at once at most (default 1000); more are refused with `rate_limited`. */
  readonly maxPending?: number;
  /**
   * Requests of one agent held at once at most (default 20): each holds its body in memory
   * (up to `proxy.max_body`), so one agent MUST NOT fill the node with held requests.
   */
  readonly maxPendingPerAgent?: number;
  /** Told when a held request's pending record is durable (`announce`): the webhook. */
  readonly onHeld?: (view: PendingApproval, webhook: WebhookSettings, body?: HeldBody) => void;
  /** A PostgreSQL cluster's: every node sees and decides the held requests. */
  readonly sharing?: ApprovalSharing;
}

/** The node's held requests. */
export class ApprovalQueue {
  readonly #clock: () => number;
  readonly #max: number;
  readonly #maxPerAgent: number;
  readonly #onHeld: ApprovalQueueOptions['onHeld'];
  readonly #sharing: ApprovalSharing | undefined;
  readonly #pending = new Map<string, Entry>();

  constructor(options: ApprovalQueueOptions) {
    this.#clock = options.clock;
    this.#max = options.maxPending ?? 1000;
    this.#maxPerAgent = options.maxPendingPerAgent ?? 20;
    this.#onHeld = options.onHeld;
    this.#sharing = options.sharing;
  }

  /**
   * Holds a request until it is decided, times out or is abandoned.
   *
   * @throws NexusError `rate_limited` when the queue is full.
   */
  hold(
    request: Omit<PendingApproval, 'id' | 'created_at' | 'expires_at'>,
    timeoutMs: number,
    webhook?: WebhookSettings,
    body?: HeldBody,
  ): Hold {
    if (this.#pending.size >= this.#max) {
      throw new NexusError('rate_limited', undefined, {
        detail: `${this.#max} requests are waiting for approval already`,
      });
    }
    let ofAgent = 0;
    for (const e of this.#pending.values()) if (e.view.agent === request.agent) ofAgent++;
    if (ofAgent >= this.#maxPerAgent) {
      throw new NexusError('rate_limited', undefined, {
        detail: `${this.#maxPerAgent} requests of this agent are waiting for approval already`,
      });
    }
    const id = `apr_${randomId(12)}`;
    const now = this.#clock();
    let settle!: (o: ApprovalOutcome) => void;
    const outcome = new Promise<ApprovalOutcome>((resolve) => {
      settle = (o) => {
        const entry = this.#pending.get(id);
        if (entry === undefined) return;
        clearTimeout(entry.timer);
        this.#pending.delete(id);
        resolve(o);
      };
    });
    const view: PendingApproval = {
      ...request,
      id,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + timeoutMs).toISOString(),
    };
    const timer = setTimeout(() => this.#end(id, { state: 'timeout' }), timeoutMs);
    timer.unref();
    this.#pending.set(id, {
      view,
      settle,
      timer,
      ...(webhook === undefined ? {} : { webhook }),
      ...(webhook?.includeBody === true && body !== undefined ? { body } : {}),
      shared: false,
    });
    return { id, outcome, abandon: () => this.#end(id, { state: 'abandoned' }) };
  }

  /** Ends a held request for this node's own reason (a shared one: as the store says). */
  #end(id: string, own: ApprovalOutcome): void {
    const entry = this.#pending.get(id);
    if (entry === undefined) return;
    const sharing = this.#sharing;
    if (!entry.shared || sharing === undefined) {
      entry.settle(own);
      return;
    }
    sharing.end(id, own).then(entry.settle, () => entry.settle(own));
  }

  /**
   * Shares a held request with the cluster, when the queue has {@link ApprovalSharing}
   * (no-op otherwise, or when it ended already). Call it once the request is durably
   * audited as pending, before {@link announce}.
   *
   * @throws NexusError `store_unavailable` (nothing shared: the caller gives the hold up)
   */
  async share(id: string): Promise<void> {
    const entry = this.#pending.get(id);
    const sharing = this.#sharing;
    if (entry === undefined || sharing === undefined) return;
    // Shared from now on: an end meanwhile asks the store after the write (sharing keeps
    // its writes in order), so it never leaves a row behind.
    entry.shared = true;
    try {
      await sharing.put(entry.view, entry.webhook);
    } catch (err) {
      entry.shared = false;
      throw err;
    }
  }

  /**
   * Applies a decision another node wrote in the store (or this node's own, through the
   * store): the holder settles the request. Returns false when it no longer holds it.
   */
  applyDecision(id: string, outcome: ApprovalOutcome & { state: 'approved' | 'denied' }): boolean {
    const entry = this.#pending.get(id);
    if (entry === undefined) return false;
    entry.settle(outcome);
    return true;
  }

  /** How many held requests are shared with the cluster. */
  sharedCount(): number {
    let n = 0;
    for (const e of this.#pending.values()) if (e.shared) n++;
    return n;
  }

  /** The request is durably audited as pending: its rule's webhook (if any) is told. */
  announce(id: string): void {
    const entry = this.#pending.get(id);
    if (entry?.webhook !== undefined) this.#onHeld?.(entry.view, entry.webhook, entry.body);
  }

  /** The webhook of a held request's rule, for verifying its callback. */
  webhookOf(id: string): { secret: string; ruleId: string } | undefined {
    const entry = this.#pending.get(id);
    return entry?.webhook === undefined
      ? undefined
      : { secret: entry.webhook.secret, ruleId: entry.view.rule_id };
  }

  /**
   * Approves or denies a held request on its rule's webhook's word (the caller verified
   * the webhook's answer or signature); the rule's `approvers` list operators, not webhooks.
   *
   * @throws NexusError `not_found` (unknown, decided or ended, or its rule has no webhook)
   */
  decideByWebhook(id: string, approver: Approver, approve: boolean): PendingApproval {
    const entry = this.#pending.get(id);
    if (entry?.webhook === undefined) {
      throw new NexusError('not_found', 'no pending approval with this id (decided or ended)');
    }
    entry.settle(approve ? { state: 'approved', approver } : { state: 'denied', approver });
    return entry.view;
  }

  /** The held requests, oldest first. */
  list(): PendingApproval[] {
    return [...this.#pending.values()].map((e) => e.view);
  }

  /**
   * Approves or denies a held request.
   *
   * @throws NexusError `not_found` (unknown, decided or ended), `forbidden` (this operator
   *   is not one of the rule's approvers).
   */
  decide(
    id: string,
    approver: Approver,
    approve: boolean,
    /** The name the rule's `approvers` are matched against; undefined matches none. */
    approverName: string | undefined,
  ): PendingApproval {
    const entry = this.#pending.get(id);
    if (entry === undefined) {
      throw new NexusError('not_found', 'no pending approval with this id (decided or ended)');
    }
    const allowed = entry.view.approvers;
    if (allowed !== undefined && (approverName === undefined || !allowed.includes(approverName))) {
      throw new NexusError('forbidden', 'this operator is not an approver of the rule');
    }
    entry.settle(approve ? { state: 'approved', approver } : { state: 'denied', approver });
    return entry.view;
  }

  /**
   * Ends every held request (the node is stopping). A shared one ends as the store says (a
   * decision written before the stop still holds), a moment later.
   */
  close(): void {
    for (const id of [...this.#pending.keys()]) this.#end(id, { state: 'stopped' });
  }
}
