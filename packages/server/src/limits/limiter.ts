/**
 * Admits a verified request against the configured limits, before policy and before
 * anything is forwarded (spec §8 step 10). A refusal is `rate_limited` (429) with the seconds until the limit frees up
 * (`Retry-After`) and the limit's id; the pipeline audits it as a denial naming the limit.
 *
 * Counting: `requests` counts every request the limit matched when checked, refused ones
 * included (fixed windows, so a refused agent waits for the window to end); `bytes` is a
 * budget: a request is refused when its body would take the window over, and the response
 * bytes are added when the response ends (so the last response may overshoot it);
 * `concurrent` holds a slot from admission to the end of the response.
 */
import { NexusError } from '@nexus-proxy/protocol';
import { formatDuration } from '../config/units.js';
import type { LimitCounterStore } from './counter-store.js';
import type { LimitRule } from './schema.js';

/** Which cap refused a request. */
export type LimitKind = 'requests' | 'concurrent' | 'bytes' | 'cost';

/** The request as limits see it (verified, before policy). */
export interface LimitInput {
  readonly agent: string;
  /** The lease's roles the agent still has (as policy saw them). */
  readonly roles: readonly string[];
  readonly service: string;
  /** The vault credential the service uses (`auth.credential`), if any. */
  readonly credential?: string;
  /** Request body bytes. */
  readonly bytesIn: number;
}

/**
 * An admitted request: call it once, when its response has ended, with the response bytes
 * and the response's cost (limits/cost.ts; undefined: none read).
 */
export type LimitRelease = (bytesOut: number, cost?: number) => void;

/** A limit refused the request: `rate_limited`, with the limit and the wait. */
export class LimitRefusal extends NexusError {
  /** Whole seconds until a retry can pass (`Retry-After`), at least 1. */
  readonly retryAfter: number;
  readonly limit: string;
  readonly kind: LimitKind;

  constructor(limit: LimitRule, kind: LimitKind, retryAfter: number) {
    // The detail holds configuration (the limit's id and numbers) only.
    super('rate_limited', undefined, { detail: `limit "${limit.id}": ${describe(limit, kind)}` });
    this.retryAfter = retryAfter;
    this.limit = limit.id;
    this.kind = kind;
  }
}

function describe(l: LimitRule, kind: LimitKind): string {
  if (kind === 'requests' && l.requests !== undefined)
    return `more than ${l.requests.max} requests per ${formatDuration(l.requests.window)}`;
  if (kind === 'bytes' && l.bytes !== undefined)
    return `more than ${l.bytes.max} bytes per ${formatDuration(l.bytes.window)}`;
  if (kind === 'cost' && l.cost !== undefined)
    return `a cost of ${l.cost.max} per ${formatDuration(l.cost.window)} is spent`;
  return `more than ${l.concurrent ?? 0} concurrent requests`;
}

/** True when `err` is a {@link LimitRefusal}. */
export function isLimitRefusal(err: unknown): err is LimitRefusal {
  return err instanceof LimitRefusal;
}

export interface LimiterOptions {
  /** The limits in force (read per request, so a reload applies at once). */
  readonly rules: () => readonly LimitRule[];
  readonly store: LimitCounterStore;
  readonly clock: () => number;
  /** Told about each refusal (metrics). */
  readonly onRefused?: (limit: string, kind: LimitKind) => void;
}

/** The limiter the pipeline calls. */
export interface Limiter {
  /** True when any limit is configured: without one the pipeline skips `admit` (no await). */
  active(): boolean;
  /**
   * Checks and counts `input` against every matching limit.
   *
   * @throws LimitRefusal when one is exceeded (slots taken for other limits are given back)
   */
  admit(input: LimitInput): Promise<LimitRelease>;
}

const NOTHING: LimitRelease = () => undefined;

function matches(l: LimitRule, r: LimitInput): boolean {
  const m = l.match;
  if (m.agents !== undefined && !m.agents.includes(r.agent)) return false;
  if (m.services !== undefined && !m.services.includes(r.service)) return false;
  if (m.roles !== undefined && !m.roles.some((role) => r.roles.includes(role))) return false;
  if (
    m.credentials !== undefined &&
    (r.credential === undefined || !m.credentials.includes(r.credential))
  )
    return false;
  return true;
}

/**
 * The counter keys of limit `id` for one subject (`a:<agent>`, `s:<service>`,
 * `as:<agent>/<service>` or `*`): requests, bytes and concurrency.
 */
export function counterKeys(id: string, subjectId: string) {
  const key = `${id}\u0000${subjectId}`;
  return {
    requests: `r\u0000${key}`,
    bytes: `b\u0000${key}`,
    concurrent: `c\u0000${key}`,
    cost: `$\u0000${key}`,
  };
}

function subject(l: LimitRule, r: LimitInput): string {
  switch (l.per) {
    case 'agent':
      return `a:${r.agent}`;
    case 'service':
      return `s:${r.service}`;
    case 'agent_service':
      return `as:${r.agent}/${r.service}`;
    case 'credential':
      // A service without a credential counts under its own name.
      return r.credential === undefined ? `s:${r.service}` : `c:${r.credential}`;
    case 'all':
      return '*';
  }
}

/** Seconds from `now` to `until`, rounded up, at least 1. */
const secondsUntil = (until: number, now: number) => Math.max(1, Math.ceil((until - now) / 1000));

/** Creates the limiter over a counter store. */
export function createLimiter(options: LimiterOptions): Limiter {
  const { store, clock } = options;
  return {
    active: () => options.rules().length > 0,
    async admit(input) {
      const matching = options.rules().filter((l) => matches(l, input));
      if (matching.length === 0) return NOTHING;
      const now = clock();
      const slots: string[] = [];
      const budgets: { key: string; window: number }[] = [];
      const costs: { key: string; window: number }[] = [];
      const refuse = (l: LimitRule, kind: LimitKind, until: number): never => {
        options.onRefused?.(l.id, kind);
        throw new LimitRefusal(l, kind, secondsUntil(until, now));
      };
      try {
        for (const l of matching) {
          const keys = counterKeys(l.id, subject(l, input));
          if (l.bytes !== undefined) {
            const c = await store.peek(keys.bytes, l.bytes.window, now);
            if (c.total + input.bytesIn > l.bytes.max) refuse(l, 'bytes', c.resetAt);
            budgets.push({ key: keys.bytes, window: l.bytes.window });
          }
          if (l.cost !== undefined) {
            // On admission: a request that starts under the budget may take it over.
            const c = await store.peek(keys.cost, l.cost.window, now);
            if (c.total >= l.cost.max) refuse(l, 'cost', c.resetAt);
            costs.push({ key: keys.cost, window: l.cost.window });
          }
          if (l.requests !== undefined) {
            const c = await store.add(keys.requests, 1, l.requests.window, now);
            if (c.total > l.requests.max) refuse(l, 'requests', c.resetAt);
          }
          if (l.concurrent !== undefined) {
            // A slot frees when a response ends: the soonest a retry can pass is unknown,
            // one second is the smallest honest wait.
            if (!(await store.acquire(keys.concurrent, l.concurrent))) refuse(l, 'concurrent', now);
            slots.push(keys.concurrent);
          }
        }
        // Inside the try: a shared store that fails here must give back the slots taken.
        for (const b of budgets)
          if (input.bytesIn > 0) await store.add(b.key, input.bytesIn, b.window, now);
      } catch (err) {
        for (const s of slots) store.release(s).catch(() => undefined);
        throw err;
      }
      let released = false;
      return (bytesOut: number, cost?: number) => {
        if (released) return;
        released = true;
        for (const s of slots) store.release(s).catch(() => undefined);
        const end = clock();
        if (bytesOut > 0)
          for (const b of budgets) store.add(b.key, bytesOut, b.window, end).catch(() => undefined);
        if (cost !== undefined && cost > 0)
          // Whole units (a Redis counter is an integer), never rounded down.
          for (const c of costs)
            store
              .add(c.key, Math.min(Math.ceil(cost), Number.MAX_SAFE_INTEGER), c.window, end)
              .catch(() => undefined);
      };
    },
  };
}
