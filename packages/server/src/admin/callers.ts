/**
 * Who calls the admin API and what their role lets them do.
 *
 * Two kinds of callers: an operator token (`nxo_...`, in the store, always `admin`), and a
 * person logged in to the console with OIDC, whose role (viewer, operator, admin) comes from
 * the ID token's claims. The console calls the admin API for a person with a person token
 * (`nxp_...`): 256 random bits minted at login, held (hashed) in memory only (this
 * process's, or under `nexus up --workers N` the primary's, which every worker asks), never
 * sent to the browser, ended with the console session.
 *
 * MUST: every admin route has a role (ROUTE_ROLES; a route not listed needs `admin`), and
 * the admin handler checks it on every call, whoever calls (console or not).
 */
import { NexusError } from '@nexus-proxy/protocol';
import { CONSOLE_ROLES, type ConsoleRole } from '../config/console-schema.js';
import { randomId, sha256Hex } from '../util/ids.js';

/** The caller of an admin route. */
export interface Caller {
  readonly type: 'operator_token' | 'person';
  /** Operator token id, or the person's `sub` at the issuer. */
  readonly id: string;
  /** Operator token name, or the person's email (else preferred_username, else sub). */
  readonly name: string;
  readonly role: ConsoleRole;
  /** A person's OIDC issuer. */
  readonly issuer?: string;
  /** A person's email, when the provider verified it. */
  readonly email?: string;
}

/** What a person token stands for. */
export interface Person {
  readonly issuer: string;
  readonly sub: string;
  readonly name: string;
  readonly role: ConsoleRole;
  /** The `email` claim, only when `email_verified` is true. */
  readonly email?: string;
}

/**
 * The name an `approvers` list is matched against: an operator token's name, a person's
 * verified email. A person's display name (an unverified email, `preferred_username`,
 * `sub`) is theirs to choose at many providers: it could be a token's name or another
 * person's email, so it never matches.
 */
export function approverNameOf(caller: Caller): string | undefined {
  return caller.type === 'person' ? caller.email : caller.name;
}

/** Route -> least role, and the audit action of a state-changing route. */
const ROUTE_ROLES: readonly (readonly [string, RegExp, ConsoleRole, string | undefined])[] = [
  ['POST', /^\/v1\/policy\/explain$/, 'viewer', undefined],
  ['POST', /^\/v1\/agents\/[^/]+\/disable$/, 'operator', 'agent.disable'],
  ['POST', /^\/v1\/agents\/[^/]+\/enable$/, 'operator', 'agent.enable'],
  ['POST', /^\/v1\/agents\/[^/]+\/revoke-leases$/, 'operator', 'agent.revoke_leases'],
  ['POST', /^\/v1\/leases\/revoke-all$/, 'operator', 'lease.revoke_all'],
  ['POST', /^\/v1\/leases\/[^/]+\/revoke$/, 'operator', 'lease.revoke'],
  // Approvals write their own audit records (approver included).
  ['POST', /^\/v1\/approvals\/[^/]+\/(?:approve|deny)$/, 'operator', undefined],
  ['POST', /^\/v1\/connections\/[^/]+$/, 'operator', 'connection.start'],
  ['DELETE', /^\/v1\/connections\/[^/]+\/[^/]+$/, 'operator', 'connection.delete'],
  ['POST', /^\/v1\/agents$/, 'admin', 'agent.create'],
  ['POST', /^\/v1\/agents\/[^/]+\/enrollment-tokens$/, 'admin', 'agent.enrollment_token'],
  ['PUT', /^\/v1\/credentials\/[^/]+$/, 'admin', 'credential.set'],
  ['POST', /^\/v1\/credentials\/[^/]+\/rotate$/, 'admin', 'credential.rotate'],
  ['DELETE', /^\/v1\/credentials\/[^/]+$/, 'admin', 'credential.delete'],
  ['POST', /^\/v1\/vault\/rotate-master-key$/, 'admin', 'vault.rotate_master_key'],
  ['POST', /^\/v1\/authority\/rotate-key$/, 'admin', 'authority.rotate_key'],
  ['POST', /^\/v1\/config\/reload$/, 'admin', 'config.reload'],
  ['POST', /^\/v1\/services$/, 'admin', 'service.add'],
];

/**
 * The least role `method path` needs, and the audit action it records (undefined: none).
 * GET is read-only: `viewer`. Anything else not listed: `admin` (fail closed).
 */
export function routeRole(
  method: string,
  path: string,
): { role: ConsoleRole; action: string | undefined } {
  for (const [m, re, role, action] of ROUTE_ROLES)
    if (m === method && re.test(path)) return { role, action };
  if (method === 'GET' || method === 'HEAD') return { role: 'viewer', action: undefined };
  return { role: 'admin', action: `admin.${method.toLowerCase()}` };
}

/** True when `have` is at least `need`. */
export function roleAllows(have: ConsoleRole, need: ConsoleRole): boolean {
  return CONSOLE_ROLES.indexOf(have) >= CONSOLE_ROLES.indexOf(need);
}

/** @throws NexusError `role_forbidden` when `caller` may not call `method path`. */
export function checkRole(caller: Caller, method: string, path: string): string | undefined {
  const { role, action } = routeRole(method, path);
  if (!roleAllows(caller.role, role))
    throw new NexusError('role_forbidden', `this action needs the ${role} role`);
  return action;
}

/**
 * What the console and the admin API need of the person tokens: this process's
 * {@link PersonTokens}, or, in a worker of `nexus up --workers N`, the table the primary
 * holds for every worker (app/worker-sessions.ts), which answers asynchronously.
 */
export interface PersonTokenTable {
  /** Mints a token for `person`; the caller keeps it in server memory only. */
  issue(person: Person): string | Promise<string>;
  /** The person of a token, or undefined. */
  find(token: string): Person | undefined | Promise<Person | undefined>;
  /** Ends a token (its console session ended). */
  revoke(token: string): void | Promise<void>;
}

/** A new person token: `nxp_` and 256 random bits. */
export function mintPersonToken(): string {
  return `nxp_${randomId(32)}`;
}

/** The hash a person token is held under (the table never holds the token itself). */
export function personTokenHash(token: string): string {
  return sha256Hex(token);
}

/** The in-memory person tokens (see the file comment). */
export class PersonTokens implements PersonTokenTable {
  readonly #byHash = new Map<string, Person>();

  /** Mints a token for `person`; the caller keeps it in server memory only. */
  issue(person: Person): string {
    const token = mintPersonToken();
    this.add(personTokenHash(token), person);
    return token;
  }

  /** The person of a token, or undefined. */
  find(token: string): Person | undefined {
    return this.findHash(personTokenHash(token));
  }

  /** Ends a token (its console session ended). */
  revoke(token: string): void {
    this.revokeHash(personTokenHash(token));
  }

  /** Holds `person` under a token's hash (the primary, for a worker that minted it). */
  add(hash: string, person: Person): void {
    this.#byHash.set(hash, person);
  }

  /** The person held under a token's hash, or undefined. */
  findHash(hash: string): Person | undefined {
    return this.#byHash.get(hash);
  }

  /** Ends the token held under `hash`. */
  revokeHash(hash: string): void {
    this.#byHash.delete(hash);
  }

  get size(): number {
    return this.#byHash.size;
  }
}
