// The `limits:` section of nexus.yaml: rate limits and budgets per agent, role, service and
// credential. Each limit selects requests (agents, roles, services, credentials; absent =
// any) and caps them per counter subject (`per`) with any of: requests per window,
// concurrent requests, bytes per window, cost per window (read from responses, a service's
// `cost:`, limits/cost.ts). Validated at load like everything else; limit ids are unique.
import { z } from 'zod';
import { AGENT_NAME_RE, ROLE_NAME_RE, RULE_ID_RE, SERVICE_NAME_RE } from '../config/names.js';
import { parseDuration, parseSize } from '../config/units.js';

/** Whose counter a request counts against. */
export const LIMIT_SUBJECTS = ['agent', 'service', 'agent_service', 'credential', 'all'] as const;

/** A vault credential name (as in `auth.credential`). */
const CREDENTIAL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** One parsed limit. */
export interface LimitRule {
  readonly id: string;
  readonly description?: string;
  /** Which requests count: every present field must match (roles: at least one of them). */
  readonly match: {
    readonly agents?: readonly string[];
    readonly roles?: readonly string[];
    readonly services?: readonly string[];
    /** The vault credential the service uses (`auth.credential`). */
    readonly credentials?: readonly string[];
  };
  /**
   * One counter per `agent` (default), per `service`, per agent and service, per
   * `credential` the service uses (several services sharing one API key share it), or one
   * for `all` the requests the limit matches (e.g. a role's shared budget).
   */
  readonly per: (typeof LIMIT_SUBJECTS)[number];
  /** At most `max` requests per fixed window of `window` ms. */
  readonly requests?: { readonly max: number; readonly window: number };
  /** At most this many requests in flight at once. */
  readonly concurrent?: number;
  /** At most `max` bytes (request plus response bodies) per fixed window of `window` ms. */
  readonly bytes?: { readonly max: number; readonly window: number };
  /**
   * A cost budget: at most `max` cost units (a service's `cost:`, e.g. LLM tokens) per fixed
   * window; checked on admission, counted when the response has ended.
   */
  readonly cost?: { readonly max: number; readonly window: number };
}

const window = z
  .string({ error: 'must be a duration, e.g. 1s, 1m, 1h, 1d' })
  .transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined || ms < 1000) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration of at least 1s, e.g. 1m' });
      return z.NEVER;
    }
    return ms;
  });

const bytes = z
  .union([z.string(), z.number()], { error: 'must be a size, e.g. 10MiB' })
  .transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined || n === 0) {
      ctx.addIssue({ code: 'custom', message: 'must be a positive size, e.g. 512KiB, 10MiB' });
      return z.NEVER;
    }
    return n;
  });

const names = (re: RegExp, what: string) =>
  z
    .array(z.string().regex(re, `must be a${what}`))
    .min(1, 'must not be empty; omit the field to match any')
    .transform((a) => [...new Set(a)].sort());

const limitSchema = z
  .strictObject({
    id: z.string().regex(RULE_ID_RE, 'must be an id (letters, digits, ".", "_", "-")'),
    description: z.string().max(1024).optional(),
    match: z
      .strictObject({
        agents: names(AGENT_NAME_RE, 'n agent name').optional(),
        roles: names(ROLE_NAME_RE, ' role name').optional(),
        services: names(SERVICE_NAME_RE, ' service name').optional(),
        credentials: names(CREDENTIAL_NAME_RE, ' credential name').optional(),
      })
      .prefault({}),
    per: z.enum(LIMIT_SUBJECTS).default('agent'),
    requests: z.strictObject({ max: z.int().positive(), window }).optional(),
    concurrent: z.int().positive().optional(),
    bytes: z.strictObject({ max: bytes, window }).optional(),
    cost: z.strictObject({ max: z.number().positive(), window }).optional(),
  })
  .superRefine((l, ctx) => {
    if (
      l.requests === undefined &&
      l.concurrent === undefined &&
      l.bytes === undefined &&
      l.cost === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        message: 'a limit needs at least one of requests, concurrent, bytes, cost',
      });
    }
  })
  .transform((l): LimitRule => {
    const { description, requests, concurrent, bytes: b, cost, ...rest } = l;
    return {
      ...rest,
      ...(description === undefined ? {} : { description }),
      ...(requests === undefined ? {} : { requests }),
      ...(concurrent === undefined ? {} : { concurrent }),
      ...(b === undefined ? {} : { bytes: b }),
      ...(cost === undefined ? {} : { cost }),
    };
  });

/** The `limits:` list; ids must be unique. */
export const limitsSchema = z
  .array(limitSchema)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((l, i) => {
      if (seen.has(l.id)) {
        ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate limit id "${l.id}"` });
      }
      seen.add(l.id);
    });
  })
  .prefault([]);
