// The zod schema of one policy rule as written in nexus.yaml (`allow:` or `deny:` plus
// optional matchers) and its normalised parsed form. Every matcher is validated here so
// a bad glob, regex or time zone fails at load, never at request time.
import { z } from 'zod';
import { AGENT_NAME_RE, ROLE_NAME_RE, RULE_ID_RE, SERVICE_NAME_RE } from '../config/names.js';
import { globProblem } from './glob.js';
import { mcpMatchSchema, type McpMatch } from './mcp-match.js';
import { DAY_NAMES, isValidTimeZone, parseHhMm, type DayName, type TimeWindow } from './time.js';

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
}

/** A normalised policy rule. */
export interface PolicyRule {
  readonly id: string;
  readonly description?: string;
  readonly effect: 'allow' | 'deny';
  readonly match: PolicyMatch;
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
});

/** Schema of one rule in `policies:`; parses to a {@link PolicyRule}. */
export const policyRuleSchema = z
  .strictObject({
    id: z.string().regex(RULE_ID_RE, 'must be a rule id (letters, digits, ".", "_", "-")'),
    description: z.string().max(1024).optional(),
    allow: policyMatchSchema.optional(),
    deny: policyMatchSchema.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.allow !== undefined && r.deny !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['deny'],
        message: 'a rule has either allow or deny, not both',
      });
    } else if (r.allow === undefined && r.deny === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a rule needs allow or deny' });
    }
  })
  .transform((r): PolicyRule => {
    const rule: { -readonly [K in keyof PolicyRule]: PolicyRule[K] } = {
      id: r.id,
      effect: r.deny !== undefined ? 'deny' : 'allow',
      match: stripUndefined((r.deny ?? r.allow ?? {}) as PolicyMatch),
    };
    if (r.description !== undefined) rule.description = r.description;
    return rule;
  });

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
