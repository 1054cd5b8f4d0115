/**
 * What a reload changes: services, agents, policies and limits added, removed or changed
 * between the running configuration and the one just read (`nexus reload` prints it; the
 * admin API returns it with the reload's result). Names and ids only, never a value: a
 * service entry holds no secret, but the diff stays a summary.
 */
import type { Config } from '../config/schema.js';

/** Names added, removed and changed in one section. */
export interface SectionDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

/** The reload's summary, per section. */
export interface ConfigDiff {
  services: SectionDiff;
  agents: SectionDiff;
  policies: SectionDiff;
  limits: SectionDiff;
}

function diffById(before: Map<string, unknown>, after: Map<string, unknown>): SectionDiff {
  const d: SectionDiff = { added: [], removed: [], changed: [] };
  for (const [k, v] of after) {
    if (!before.has(k)) d.added.push(k);
    else if (JSON.stringify(before.get(k)) !== JSON.stringify(v)) d.changed.push(k);
  }
  for (const k of before.keys()) if (!after.has(k)) d.removed.push(k);
  for (const list of [d.added, d.removed, d.changed]) list.sort();
  return d;
}

const byName = (o: Readonly<Record<string, unknown>>) => new Map(Object.entries(o));
const byId = (list: readonly { id: string }[]) => new Map(list.map((x) => [x.id, x] as const));

/** Compares the running configuration with the next one. */
export function diffConfig(running: Config, next: Config): ConfigDiff {
  return {
    services: diffById(byName(running.services), byName(next.services)),
    agents: diffById(byName(running.agents), byName(next.agents)),
    policies: diffById(byId(running.policies), byId(next.policies)),
    limits: diffById(byId(running.limits), byId(next.limits)),
  };
}

/** True when the diff changes nothing. */
export function isEmptyDiff(d: ConfigDiff): boolean {
  return Object.values(d).every(
    (s: SectionDiff) => s.added.length + s.removed.length + s.changed.length === 0,
  );
}
