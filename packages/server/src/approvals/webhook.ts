/**
 * Webhook approvers (issue 15): an `approve` rule with `webhook:` has each held request
 * described to a URL, signed with an HMAC key from the vault. The webhook answers at once
 * (`200` with `{"decision": "approve" | "deny", "approver": NAME}`) or later, by calling
 * `POST /v1/approvals/{id}/webhook` on the admin API with the same signature scheme.
 *
 * Signature (both directions): `Nexus-Webhook-Timestamp: <unix seconds>` and
 * `Nexus-Webhook-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body bytes>")>`,
 * key = the vault credential's `value` field. A callback is accepted within 5 minutes of
 * its timestamp, and its body names the approval id it decides (so a signed answer for one
 * held request cannot decide another).
 *
 * MUST: the description holds what an operator sees in `nexus approval list` (identity,
 * route, intent, rule, times): never a header value, the query or a credential; the body
 * (as the agent sent it: it never holds a credential) only with `include_body: true`.
 * MUST: a webhook that is down, slow or answers garbage never approves: the request stays
 * held until someone decides or its timeout ends it (`approval_timeout`).
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { parseDuration } from '../config/units.js';
import { readBody } from '../proxy/read-body.js';
import { timingSafeEqualString } from '../util/timing-safe.js';
import type { Logger } from '../util/logger.js';
import type { ApprovalBoard } from './board.js';
import type { PendingApproval } from './queue.js';

/** An `approve` rule's `webhook:` as parsed. */
export interface WebhookSettings {
  /** Where held requests are described (https, or http to a loopback host). */
  readonly url: string;
  /** The vault credential whose `value` field is the HMAC key. */
  readonly secret: string;
  /** How long the POST may take, in ms. */
  readonly timeoutMs: number;
  /** Send the request body (base64, up to 64 KiB) with the description (default false). */
  readonly includeBody: boolean;
}

/** The held request's body, for a webhook with `include_body: true`. */
export interface HeldBody {
  readonly bytes: Buffer;
  readonly contentType: string | undefined;
}

/** The most body bytes put in a description; a larger body is described by its size only. */
export const MAX_DESCRIBED_BODY = 64 * 1024;

export const WEBHOOK_TIMESTAMP_HEADER = 'nexus-webhook-timestamp';
export const WEBHOOK_SIGNATURE_HEADER = 'nexus-webhook-signature';
/** How far a callback's timestamp may be from the node's clock. */
const CALLBACK_WINDOW_S = 300;
/** The most a webhook's answer or a callback may be. */
const MAX_ANSWER_BYTES = 64 * 1024;

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The `webhook:` schema of an approve rule. */
export const webhookSchema = z
  .strictObject({
    url: z.string().superRefine((s, ctx) => {
      let u: URL | undefined;
      try {
        u = new URL(s);
      } catch {
        u = undefined;
      }
      if (u === undefined || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
        ctx.addIssue({ code: 'custom', message: 'must be an https URL' });
      } else if (u.protocol === 'http:' && !isLoopback(u.hostname)) {
        ctx.addIssue({ code: 'custom', message: 'plain http only to a loopback host; use https' });
      } else if (u.username !== '' || u.password !== '') {
        ctx.addIssue({ code: 'custom', message: 'must not contain a user name or password' });
      }
    }),
    secret: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a vault credential name'),
    timeout: z
      .string()
      .refine((s) => {
        const ms = parseDuration(s);
        return ms !== undefined && ms >= 1000 && ms <= 60_000;
      }, 'must be a duration from 1s to 60s, e.g. 10s')
      .default('10s'),
    include_body: z.boolean().default(false),
  })
  .transform((w): WebhookSettings => ({
    url: w.url,
    secret: w.secret,
    timeoutMs: parseDuration(w.timeout) as number,
    includeBody: w.include_body,
  }));

/** The description's `body` member (only for `include_body: true`). */
function describeBody(body: HeldBody | undefined) {
  if (body === undefined) return {};
  const base = {
    bytes: body.bytes.length,
    ...(body.contentType === undefined ? {} : { content_type: body.contentType }),
  };
  return {
    body:
      body.bytes.length > MAX_DESCRIBED_BODY
        ? { ...base, omitted: 'too_large' }
        : { ...base, base64: body.bytes.toString('base64') },
  };
}

/** `sha256=<hex>` of `<timestamp>.<body>` under `key`. */
export function webhookSignature(key: string, timestamp: string, body: Buffer | string): string {
  const mac = createHmac('sha256', key).update(`${timestamp}.`).update(body).digest('hex');
  return `sha256=${mac}`;
}

const answerSchema = z.object({
  decision: z.enum(['approve', 'deny']),
  // Goes into the audit chain: a name, never free text.
  approver: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/),
});

const callbackSchema = answerSchema.extend({ id: z.string().min(1).max(64) });

export interface ApprovalWebhooksOptions {
  /**
   * The node's held requests: a callback may reach any worker of `nexus up --workers N`,
   * and is decided by the one that holds the request (approvals/board.ts).
   */
  readonly board: ApprovalBoard;
  /** The HMAC key: the `value` field of the named vault credential. */
  readonly resolveSecret: (name: string) => Promise<string | undefined>;
  readonly clock: () => number;
  readonly logger: Logger;
  /** The admin API's base URL, for the callback address in the description. */
  readonly adminUrl: () => string | undefined;
}

/** The node's webhook approvers: notify on hold, and verify callbacks. */
export interface ApprovalWebhooks {
  /** Describes a held request to its rule's webhook; an answer decides it. Never throws. */
  notify(view: PendingApproval, webhook: WebhookSettings, body?: HeldBody): void;
  /** `POST /v1/approvals/{id}/webhook`: a signed decision from the rule's webhook. */
  callback(req: IncomingMessage, res: ServerResponse, id: string): Promise<void>;
}

/** Who decided, as audited: the name the webhook gave, and which rule's webhook it was. */
const approverOf = (name: string, ruleId: string) => ({
  name,
  token_id: `webhook:${ruleId}`,
});

/** The HMAC key of a webhook: the `value` field of the vault credential named `secret`. */
async function keyOf(o: ApprovalWebhooksOptions, secret: string): Promise<string> {
  const key = await o.resolveSecret(secret).catch(() => undefined);
  if (key === undefined || key.length < 16) {
    throw new NexusError('credential_unavailable', undefined, {
      detail: `webhook secret "${secret}" is not set (or shorter than 16 characters)`,
    });
  }
  return key;
}

/** Creates the webhook approvers over `board`. */
export function createApprovalWebhooks(o: ApprovalWebhooksOptions): ApprovalWebhooks {
  async function send(
    view: PendingApproval,
    webhook: WebhookSettings,
    held: HeldBody | undefined,
  ): Promise<void> {
    const key = await keyOf(o, webhook.secret);
    const admin = o.adminUrl();
    const body = JSON.stringify({
      type: 'approval.pending',
      approval: view,
      ...(webhook.includeBody ? describeBody(held) : {}),
      ...(admin === undefined
        ? {}
        : { callback_url: `${admin}/v1/approvals/${encodeURIComponent(view.id)}/webhook` }),
    });
    const timestamp = String(Math.floor(o.clock() / 1000));
    const res = await fetch(webhook.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [WEBHOOK_TIMESTAMP_HEADER]: timestamp,
        [WEBHOOK_SIGNATURE_HEADER]: webhookSignature(key, timestamp, body),
      },
      body,
      // A redirect is not followed: the description goes to the configured URL only.
      redirect: 'manual',
      signal: AbortSignal.timeout(webhook.timeoutMs),
    });
    const text = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || text.length === 0 || text.length > MAX_ANSWER_BYTES) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString('utf8'));
    } catch {
      return;
    }
    const answer = answerSchema.safeParse(parsed);
    // Anything but a decision: the webhook answers later (callback), or nobody does.
    if (!answer.success) return;
    await o.board.decideByWebhook(
      view.id,
      approverOf(answer.data.approver, view.rule_id),
      answer.data.decision === 'approve',
    );
  }

  return {
    notify(view, webhook, body) {
      send(view, webhook, body).catch((err: unknown) => {
        // The request stays held: only a person or the timeout ends it now.
        const code = err instanceof NexusError ? err.code : (err as { name?: unknown }).name;
        o.logger.warn(
          { approval_id: view.id, rule_id: view.rule_id, err: { code } },
          'approval webhook failed; the request stays held until decided or timed out',
        );
      });
    },

    async callback(req, res, id) {
      const body = await readBody(req, MAX_ANSWER_BYTES);
      const webhook = await o.board.webhookOf(id);
      if (webhook === undefined)
        throw new NexusError('not_found', 'no pending approval with a webhook under this id');
      const timestamp = req.headers[WEBHOOK_TIMESTAMP_HEADER];
      const signature = req.headers[WEBHOOK_SIGNATURE_HEADER];
      const now = o.clock() / 1000;
      if (
        typeof timestamp !== 'string' ||
        typeof signature !== 'string' ||
        !/^\d{1,12}$/.test(timestamp) ||
        Math.abs(now - Number(timestamp)) > CALLBACK_WINDOW_S
      ) {
        throw new NexusError('unauthorized', undefined, {
          detail: `the callback needs ${WEBHOOK_TIMESTAMP_HEADER} (within 5 minutes) and ${WEBHOOK_SIGNATURE_HEADER}`,
        });
      }
      const key = await keyOf(o, webhook.secret);
      if (!timingSafeEqualString(signature, webhookSignature(key, timestamp, body))) {
        throw new NexusError('unauthorized', undefined, {
          detail: 'the webhook signature does not match',
        });
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const answer = callbackSchema.safeParse(parsed);
      if (!answer.success || answer.data.id !== id) {
        throw new NexusError('validation_failed', undefined, {
          detail:
            'the body must be {"id": <this approval id>, "decision": "approve" | "deny", "approver": NAME}',
        });
      }
      const approver = approverOf(answer.data.approver, webhook.ruleId);
      const view = await o.board.decideByWebhook(id, approver, answer.data.decision === 'approve');
      const text = JSON.stringify({
        approval: view,
        state: answer.data.decision === 'approve' ? 'approved' : 'denied',
        approver,
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    },
  };
}
