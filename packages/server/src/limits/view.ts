/**
 * `GET /v1/limits`: the configured limits and their live counters, for the console's
 * limits page and the CLI. Counter subjects are enumerated from the configuration (agents
 * and services the limit matches) and read with `peek`/`inFlight`, so it works the same
 * over the memory and the Redis counter store; only subjects with something counted are
 * listed.
 */
import type { LimitCounterStore } from './counter-store.js';
import { counterKeys } from './limiter.js';
import type { LimitRule } from './schema.js';

/** One subject's live use of a limit. */
export interface LimitCounterView {
  /** `agent:<name>`, `service:<name>`, `<agent>/<service>`, `credential:<name>` or `all`. */
  subject: string;
  requests?: { used: number; max: number; resets_at: string };
  bytes?: { used: number; max: number; resets_at: string };
  cost?: { used: number; max: number; resets_at: string };
  concurrent?: { in_flight: number; max: number };
}

/** One configured limit and its counters. */
export interface LimitView {
  id: string;
  description?: string;
  match: LimitRule['match'];
  per: LimitRule['per'];
  requests?: { max: number; window_seconds: number };
  concurrent?: number;
  bytes?: { max: number; window_seconds: number };
  cost?: { max: number; window_seconds: number };
  counters: LimitCounterView[];
}

/** The subjects a limit can count, from the configured agents (with roles) and services. */
function subjects(
  l: LimitRule,
  agents: readonly { name: string; roles: readonly string[] }[],
  services: readonly { name: string; credential?: string }[],
): { id: string; label: string }[] {
  const m = l.match;
  const as = agents.filter(
    (a) =>
      (m.agents === undefined || m.agents.includes(a.name)) &&
      (m.roles === undefined || m.roles.some((r) => a.roles.includes(r))),
  );
  const matched = services.filter(
    (s) =>
      (m.services === undefined || m.services.includes(s.name)) &&
      (m.credentials === undefined ||
        (s.credential !== undefined && m.credentials.includes(s.credential))),
  );
  const ss = matched.map((s) => s.name);
  switch (l.per) {
    case 'agent':
      return as.map((a) => ({ id: `a:${a.name}`, label: `agent:${a.name}` }));
    case 'service':
      return ss.map((s) => ({ id: `s:${s}`, label: `service:${s}` }));
    case 'agent_service':
      return as.flatMap((a) =>
        ss.map((s) => ({ id: `as:${a.name}/${s}`, label: `${a.name}/${s}` })),
      );
    case 'credential': {
      // The limiter's subject: the credential, or the service's own name without one.
      const ids = new Map<string, string>();
      for (const s of matched) {
        if (s.credential === undefined) ids.set(`s:${s.name}`, `service:${s.name}`);
        else ids.set(`c:${s.credential}`, `credential:${s.credential}`);
      }
      return [...ids].map(([id, label]) => ({ id, label }));
    }
    case 'all':
      return [{ id: '*', label: 'all' }];
  }
}

/** Builds the view of every limit. */
export async function limitsView(input: {
  rules: readonly LimitRule[];
  store: LimitCounterStore;
  agents: readonly { name: string; roles: readonly string[] }[];
  services: readonly { name: string; credential?: string }[];
  now: number;
}): Promise<{ limits: LimitView[] }> {
  const iso = (ms: number) => new Date(ms).toISOString();
  const limits: LimitView[] = [];
  for (const l of input.rules) {
    const counters: LimitCounterView[] = [];
    for (const s of subjects(l, input.agents, input.services)) {
      const keys = counterKeys(l.id, s.id);
      const c: LimitCounterView = { subject: s.label };
      let used = false;
      if (l.requests !== undefined) {
        const w = await input.store.peek(keys.requests, l.requests.window, input.now);
        c.requests = { used: w.total, max: l.requests.max, resets_at: iso(w.resetAt) };
        used ||= w.total > 0;
      }
      if (l.bytes !== undefined) {
        const w = await input.store.peek(keys.bytes, l.bytes.window, input.now);
        c.bytes = { used: w.total, max: l.bytes.max, resets_at: iso(w.resetAt) };
        used ||= w.total > 0;
      }
      if (l.cost !== undefined) {
        const w = await input.store.peek(keys.cost, l.cost.window, input.now);
        c.cost = { used: w.total, max: l.cost.max, resets_at: iso(w.resetAt) };
        used ||= w.total > 0;
      }
      if (l.concurrent !== undefined) {
        const n = await input.store.inFlight(keys.concurrent);
        c.concurrent = { in_flight: n, max: l.concurrent };
        used ||= n > 0;
      }
      if (used) counters.push(c);
    }
    limits.push({
      id: l.id,
      ...(l.description === undefined ? {} : { description: l.description }),
      match: l.match,
      per: l.per,
      ...(l.requests === undefined
        ? {}
        : { requests: { max: l.requests.max, window_seconds: l.requests.window / 1000 } }),
      ...(l.concurrent === undefined ? {} : { concurrent: l.concurrent }),
      ...(l.bytes === undefined
        ? {}
        : { bytes: { max: l.bytes.max, window_seconds: l.bytes.window / 1000 } }),
      ...(l.cost === undefined
        ? {}
        : { cost: { max: l.cost.max, window_seconds: l.cost.window / 1000 } }),
      counters,
    });
  }
  return { limits };
}
