// Sub-lease narrowing (spec §12.5): what a delegation may ask for given the delegating
// lease, and what a request made with a sub-lease may do. Pure, shared by the Authority
// (which mints sub-leases), the proxy (which enforces them on every request) and the
// conformance vectors (vectors/delegation).
//
// Intent patterns are globs, not regular expressions: they come from agents, and the proxy
// matches them against agent input on every request, so the matcher MUST run in linear
// time (no backtracking an agent could make exponential; a regular expression of the
// operator's policy is trusted, an agent's is not).

import { NexusError } from './errors.js';
import type { LeaseClaims } from './lease.js';
import { SERVICE_NAME } from './route.js';

/** Most characters in a sub-lease's intent pattern. */
export const MAX_INTENT_PATTERN_LENGTH = 256;
/** Most services a sub-lease may name. */
export const MAX_DELEGATED_SERVICES = 64;

/** The narrowing members of a delegation request (`POST /v1/leases/delegate`). */
export interface DelegationRequest {
  readonly roles?: unknown;
  readonly services?: unknown;
  readonly intent_pattern?: unknown;
}

/** The grant of a sub-lease: its roles and, when narrowed, its services and intent patterns. */
export interface DelegatedGrant {
  readonly roles: string[];
  /** `nexus_services`: absent when neither it nor a lease above it was narrowed by service. */
  readonly services?: string[];
  /** `nexus_intents`: every pattern of the leases above it, then its own; all must match. */
  readonly intents?: string[];
}

/**
 * True when `intent` matches the glob `pattern`: `*` matches any run of characters
 * (including none), every other character itself, compared without regard to ASCII case,
 * over the whole intent. Linear in `pattern.length * intent.length` at worst, without
 * recursion (the two-pointer wildcard match).
 */
export function intentMatches(pattern: string, intent: string): boolean {
  const p = pattern.toLowerCase();
  const s = intent.toLowerCase();
  let i = 0;
  let j = 0;
  let star = -1;
  let mark = 0;
  while (i < s.length) {
    if (j < p.length && p[j] !== '*' && p[j] === s[i]) {
      i++;
      j++;
    } else if (j < p.length && p[j] === '*') {
      star = j++;
      mark = i;
    } else if (star >= 0) {
      j = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (j < p.length && p[j] === '*') j++;
  return j === p.length;
}

const stringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'string');

/** The `nexus_services` of a lease, or undefined when it is not narrowed by service. */
export function delegatedServices(claims: LeaseClaims): string[] | undefined {
  const v = claims.nexus_services;
  return stringArray(v) ? v : undefined;
}

/** The `nexus_intents` of a lease (every one must match), or none. */
export function delegatedIntents(claims: LeaseClaims): string[] {
  const v = claims.nexus_intents;
  return stringArray(v) ? v : [];
}

/**
 * The grant of a sub-lease asked for by `request`, delegated from the lease `parent`
 * [DELEGATE-NARROW]. Never wider than the parent: roles a subset of its `scope`, services a
 * subset of its `nexus_services` (any service names when it has none), and its intent
 * patterns kept, the new one added after them (so a sub-lease's intents are at least as
 * narrow by construction).
 *
 * @throws NexusError `validation_failed` (a malformed member), `delegation_too_wide` (a
 *   role or service the parent lacks).
 */
export function narrowDelegation(parent: LeaseClaims, request: DelegationRequest): DelegatedGrant {
  const parentRoles = parent.scope.split(' ').filter((x) => x !== '');
  let roles = parentRoles;
  if (request.roles !== undefined) {
    if (!stringArray(request.roles)) {
      throw new NexusError('validation_failed', 'roles must be an array of role names');
    }
    // MUST: never wider than the delegating lease.
    if (!request.roles.every((x) => parentRoles.includes(x))) {
      throw new NexusError(
        'delegation_too_wide',
        'a sub-lease cannot have a role its parent lacks',
      );
    }
    roles = [...new Set(request.roles)];
  }
  const parentServices = delegatedServices(parent);
  let services = parentServices;
  if (request.services !== undefined) {
    if (
      !stringArray(request.services) ||
      request.services.length === 0 ||
      request.services.length > MAX_DELEGATED_SERVICES ||
      !request.services.every((s) => SERVICE_NAME.test(s))
    ) {
      throw new NexusError(
        'validation_failed',
        `services must be a non-empty array of at most ${MAX_DELEGATED_SERVICES} service names`,
      );
    }
    if (
      parentServices !== undefined &&
      !request.services.every((s) => parentServices.includes(s))
    ) {
      throw new NexusError(
        'delegation_too_wide',
        'a sub-lease cannot name a service its parent is not delegated',
      );
    }
    services = [...new Set(request.services)].sort();
  }
  const intents = [...delegatedIntents(parent)];
  if (request.intent_pattern !== undefined) {
    const p = request.intent_pattern;
    if (
      typeof p !== 'string' ||
      p.length === 0 ||
      p.length > MAX_INTENT_PATTERN_LENGTH ||
      !/^[\x20-\x7e]+$/.test(p)
    ) {
      throw new NexusError(
        'validation_failed',
        `intent_pattern must be 1 to ${MAX_INTENT_PATTERN_LENGTH} printable ASCII characters`,
      );
    }
    intents.push(p);
  }
  return {
    roles,
    ...(services !== undefined ? { services } : {}),
    ...(intents.length > 0 ? { intents } : {}),
  };
}

/**
 * Checks a request made with `claims` against its delegated services and intent patterns
 * (spec §12.5) [DELEGATE-ENFORCE]. A lease without `nexus_services` or `nexus_intents` is
 * not narrowed and passes.
 *
 * @throws NexusError `service_not_delegated`, `intent_not_delegated`.
 */
export function checkDelegatedRequest(claims: LeaseClaims, service: string, intent: string): void {
  const services = delegatedServices(claims);
  if (services !== undefined && !services.includes(service)) {
    throw new NexusError('service_not_delegated');
  }
  for (const pattern of delegatedIntents(claims)) {
    if (!intentMatches(pattern, intent)) throw new NexusError('intent_not_delegated');
  }
}
