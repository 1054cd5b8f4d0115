// The zod schema of one policy rule as written in nexus.yaml (`allow:` or `deny:` plus
// optional matchers) and its normalised parsed form. Every matcher is validated here so
// a bad glob, regex or time zone fails at load, never at request time.
import { z } from 'zod';
import { AGENT_NAME_RE, ROLE_NAME_RE, RULE_ID_RE, SERVICE_NAME_RE } from '../config/names.js';
import { globProblem } from './glob.js';
import { mcpMatchSchema, type McpMatch } from './mcp-match.js';
import { DAY_NAMES, isValidTimeZone, parseHhMm, type DayName, type TimeWindow } from './time.js';
import { parseDuration } from '../config/units.js';
import { webhookSchema, type WebhookSettings } from '../approvals/webhook.js';

/** Default and longest time a request waits for approval (`timeout` of an `approve` rule). */
export const APPROVAL_TIMEOUT_DEFAULT_MS = 120_000;
/** Held requests must end before HTTP clients give up waiting for headers (undici: 300 s). */
export const APPROVAL_TIMEOUT_MAX_MS = 240_000;

/** Most characters in an intent pattern. */
export const MAX_INTENT_PATTERN = 1024;

/** Builds the full-match, case-insensitive RegExp of an intent pattern; throws if invalid. */
export function compileIntent(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'i');
}

/** What a rule matches. Absent = any; every present field must match. */
export interface PolicyMatch {
  /** Agent names. */
  readonly agents?: readonly string[];
  /** Roles: matches when the lease has at least one of them. */
  readonly roles?: readonly string[];
  /** Service names. */
  readonly services?: readonly string[];
  /** Upper-case methods; `['*']` = any. */
  readonly methods?: readonly string[];
  /** Path globs (see `policy/glob.ts`). */
  readonly paths?: readonly string[];
  /** Intent pattern: full match, case-insensitive. */
  readonly intent?: string;
  /** Time window. */
  readonly time?: TimeWindow;
  /** MCP methods, tools, resources, prompts (`policy/mcp-match.ts`). */
  readonly mcp?: McpMatch;
  /**
   * The lease's delegation chain (spec §12.5): its depth (how many leases it was delegated
   * through; 0 for a lease that was not delegated) within `[min_depth, max_depth]`.
   */
  readonly delegation?: DelegationMatch;
}

/** `delegation:` of a rule: bounds on the delegation chain's depth (inclusive). */
export interface DelegationMatch {
  readonly min_depth?: number;
  readonly max_depth?: number;
}

/** The deepest delegation chain (the Authority refuses deeper ones). */
export const MAX_DELEGATION_MATCH_DEPTH = 8;

const depthSchema = z.number().int().min(0).max(MAX_DELEGATION_MATCH_DEPTH);
const delegationMatchSchema = z
  .strictObject({ min_depth: depthSchema.optional(), max_depth: depthSchema.optional() })
  .refine((d) => d.min_depth !== undefined || d.max_depth !== undefined, {
    message: 'needs min_depth or max_depth',
  })
  .refine((d) => (d.min_depth ?? 0) <= (d.max_depth ?? MAX_DELEGATION_MATCH_DEPTH), {
    message: 'min_depth must not exceed max_depth',
  });

/** A normalised policy rule. */
export interface PolicyRule {
  readonly id: string;
  readonly description?: string;
  /** `approve`: allowed once an operator approves the request (issue 15). */
  readonly effect: 'allow' | 'deny' | 'approve';
  readonly match: PolicyMatch;
  /** `approve` rules only: who may approve, and how long the request waits. */
  readonly approval?: ApprovalSettings;
}

/** How an `approve` rule's requests are approved. */
export interface ApprovalSettings {
  /** Operator token names that may approve; absent: any operator. */
  readonly approvers?: readonly string[];
  /** How long the request is held before it fails with `approval_timeout`, in ms. */
  readonly timeoutMs: number;
  /** A webhook approver told of each held request (approvals/webhook.ts). */
  readonly webhook?: WebhookSettings;
}

function nonEmptySet<T extends z.ZodType<string>>(item: T) {
  return z
    .array(item)
    .min(1, 'must not be empty; omit the field to match any')
    .transform((a) => [...new Set(a)].sort());
}

const timeSchema = z
  .strictObject({
    days: nonEmptySet(z.enum(DAY_NAMES))
      .transform((a) => DAY_NAMES.filter((d) => a.includes(d)) as DayName[])
      .optional(),
    from: z
      .string()
      .refine((s) => parseHhMm(s) !== undefined && s !== '24:00', 'must be HH:MM (00:00-23:59)')
      .default('00:00'),
    to: z
      .string()
      .refine((s) => parseHhMm(s) !== undefined, 'must be HH:MM (00:00-24:00)')
      .default('24:00'),
    tz: z.string().refine(isValidTimeZone, 'must be UTC or an IANA time zone').default('UTC'),
  })
  .superRefine((t, ctx) => {
    if (parseHhMm(t.from) !== undefined && parseHhMm(t.from) === parseHhMm(t.to)) {
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'must differ from "from"' });
    }
  });

/**
 * Methods a rule may name. A closed list: a typo such as `DELET` in a deny rule would
 * otherwise match nothing and silently stop denying.
 */
export const HTTP_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'TRACE',
  'CONNECT',
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'REPORT',
  'SEARCH',
  'QUERY',
]);

/** Schema of the matcher block under `allow:` or `deny:`. */
export const policyMatchSchema = z.strictObject({
  agents: nonEmptySet(z.string().regex(AGENT_NAME_RE, 'must be an agent name')).optional(),
  roles: nonEmptySet(z.string().regex(ROLE_NAME_RE, 'must be a role name')).optional(),
  services: nonEmptySet(z.string().regex(SERVICE_NAME_RE, 'must be a service name')).optional(),
  methods: nonEmptySet(
    z
      .string()
      .transform((m) => m.toUpperCase())
      .refine(
        (m) => m === '*' || HTTP_METHODS.has(m),
        `must be "*" or one of ${[...HTTP_METHODS].join(', ')}`,
      ),
  )
    .transform((a) => (a.includes('*') ? ['*'] : a))
    .optional(),
  paths: nonEmptySet(
    z.string().superRefine((g, ctx) => {
      const problem = globProblem(g);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    }),
  ).optional(),
  intent: z
    .string()
    .max(MAX_INTENT_PATTERN)
    .superRefine((p, ctx) => {
      try {
        compileIntent(p);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a valid regular expression' });
      }
    })
    .optional(),
  time: timeSchema.optional(),
  mcp: mcpMatchSchema.optional(),
  delegation: delegationMatchSchema.optional(),
});

/** Schema of one rule in `policies:`; parses to a {@link PolicyRule}. */
export const policyRuleSchema = z
  .strictObject({
    id: z.string().regex(RULE_ID_RE, 'must be a rule id (letters, digits, ".", "_", "-")'),
    description: z.string().max(1024).optional(),
    allow: policyMatchSchema.optional(),
    deny: policyMatchSchema.optional(),
    approve: policyMatchSchema.optional(),
    approvers: z
      .array(
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, 'must be an operator token name'),
      )
      .min(1, 'must not be empty; omit the field to let any operator approve')
      .transform((a) => [...new Set(a)].sort())
      .optional(),
    timeout: z
      .string()
      .refine(
        (s) => {
          const ms = parseDuration(s);
          return ms !== undefined && ms >= 1000 && ms <= APPROVAL_TIMEOUT_MAX_MS;
        },
        `must be a duration from 1s to ${APPROVAL_TIMEOUT_MAX_MS / 1000}s, e.g. 2m`,
      )
      .optional(),
    webhook: webhookSchema.optional(),
  })
  .superRefine((r, ctx) => {
    const effects = [r.allow, r.deny, r.approve].filter((m) => m !== undefined).length;
    if (effects > 1) {
      ctx.addIssue({
        code: 'custom',
        path: [r.deny !== undefined ? 'deny' : 'approve'],
        message: 'a rule has one of allow, deny or approve',
      });
    } else if (effects === 0) {
      ctx.addIssue({ code: 'custom', message: 'a rule needs allow, deny or approve' });
    }
    if (r.approve === undefined) {
      for (const k of ['approvers', 'timeout', 'webhook'] as const) {
        if (r[k] !== undefined)
          ctx.addIssue({ code: 'custom', path: [k], message: 'only an approve rule has it' });
      }
    }
  })
  .transform((r): PolicyRule => {
    const rule: { -readonly [K in keyof PolicyRule]: PolicyRule[K] } = {
      id: r.id,
      effect: r.deny !== undefined ? 'deny' : r.approve !== undefined ? 'approve' : 'allow',
      match: stripUndefined((r.deny ?? r.approve ?? r.allow ?? {}) as PolicyMatch),
    };
    if (r.approve !== undefined) {
      rule.approval = {
        ...(r.approvers === undefined ? {} : { approvers: r.approvers }),
        timeoutMs:
          r.timeout === undefined
            ? APPROVAL_TIMEOUT_DEFAULT_MS
            : (parseDuration(r.timeout) as number),
        ...(r.webhook === undefined ? {} : { webhook: r.webhook }),
      };
    }
    if (r.description !== undefined) rule.description = r.description;
    return rule;
  });

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
