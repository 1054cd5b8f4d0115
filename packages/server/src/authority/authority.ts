/**
 * The Authority: agents, enrollment tokens, leases (issue, renew, revoke) and the
 * discovery document. One instance per process; the proxy asks it, in memory, whether a
 * lease is revoked, so a revocation is effective on the very next request.
 *
 * MUST: enrollment tokens are stored hashed and consumed atomically (single use).
 * MUST: `act` and `nexus_task` come from the enrollment token the operator created, never
 * from the agent. MUST: renewal keeps the lease key and never extends past the chain's
 * maximum lifetime.
 */
import {
  CompactSign,
  SignJWT,
  calculateJwkThumbprint,
  compactVerify,
  decodeProtectedHeader,
  type JWK,
} from 'jose';
import {
  NexusError,
  RESPONSE_SIGNATURE_TAG,
  SIGNATURE_PROFILES,
  narrowDelegation,
  type DelegatedGrant,
  type DelegationRequest,
  type LeaseClaims,
  type VerifiedRequest,
} from '@nexus-proxy/protocol';
import type { AgentRow, LeaseRow, Store } from '../store/store.js';
import type { Vault } from '../vault/vault.js';
import { randomId, sha256Hex } from '../util/ids.js';
import { SigningKeys, type AuthorityAlg } from './signing-keys.js';

export interface AuthoritySettings {
  readonly issuer: string;
  readonly proxyUrl: string;
  readonly trustDomain: string;
  readonly leaseTtlMs: number;
  readonly leaseMaxLifetimeMs: number;
  readonly enrollmentTtlMs: number;
  readonly signingAlg: AuthorityAlg;
  /** The verifier's tolerance on lease `exp` (authority.clock_skew); default 0. */
  readonly clockSkewMs?: number;
  /** Agents declared in nexus.yaml: name -> roles. */
  readonly configAgents: Readonly<Record<string, { readonly roles: readonly string[] }>>;
}

export interface IssuedLease {
  readonly lease: string;
  readonly claims: LeaseClaims;
  readonly expiresAt: number;
}

export interface EnrollmentTokenResult {
  readonly token: string;
  readonly id: string;
  readonly agent: string;
  readonly expiresAt: number;
}

/** Public key types an agent may enroll with. */
function checkAgentJwk(jwk: unknown): JWK {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw new NexusError('validation_failed', 'jwk must be a JSON object');
  }
  const k = jwk as Record<string, unknown>;
  if ('d' in k || 'p' in k || 'q' in k || 'k' in k) {
    throw new NexusError('validation_failed', 'jwk must be a public key');
  }
  const b64url = (v: unknown, len: number): boolean =>
    typeof v === 'string' &&
    /^[A-Za-z0-9_-]+$/.test(v) &&
    Buffer.from(v, 'base64url').length === len;
  if (k.kty === 'OKP' && k.crv === 'Ed25519' && b64url(k.x, 32)) {
    if (k.alg !== undefined && k.alg !== 'EdDSA' && k.alg !== 'Ed25519') {
      throw new NexusError('validation_failed', 'jwk alg does not match its key type');
    }
    return { kty: 'OKP', crv: 'Ed25519', x: k.x as string, alg: 'EdDSA' };
  }
  if (k.kty === 'EC' && k.crv === 'P-256' && b64url(k.x, 32) && b64url(k.y, 32)) {
    if (k.alg !== undefined && k.alg !== 'ES256') {
      throw new NexusError('validation_failed', 'jwk alg does not match its key type');
    }
    return { kty: 'EC', crv: 'P-256', x: k.x as string, y: k.y as string, alg: 'ES256' };
  }
  throw new NexusError('validation_failed', 'jwk must be an Ed25519 or P-256 public key');
}

export class Authority {
  readonly keys: SigningKeys;
  #agents = new Map<string, AgentRow>();
  #revokedJtis = new Set<string>();
  #epochAll = 0;
  #epochByAgent = new Map<string, number>();
  /** Counts this node's own changes, so a refresh never applies a read older than one. */
  #localChanges = 0;
  #refreshing: Promise<void> | undefined;
  #refreshAgain = false;
  /**
   * Told after every change other nodes of a cluster must see (revocations, agents,
   * signing keys); `app/cluster-sync.ts` publishes it. MUST NOT throw.
   */
  onChange: (() => Promise<void>) | undefined;

  constructor(
    private readonly settings: AuthoritySettings,
    private readonly store: Store,
    vault: Vault,
    private readonly clock: () => number,
  ) {
    this.keys = new SigningKeys(store, vault, clock);
  }

  async init(): Promise<void> {
    await this.keys.init(this.settings.signingAlg);
    const now = this.clock();
    for (const [name, agent] of Object.entries(this.settings.configAgents)) {
      const existing = await this.store.getAgent(name);
      await this.store.upsertAgent({
        name,
        roles: [...agent.roles],
        disabled: existing?.disabled ?? false,
        source: 'config',
        createdAt: existing?.createdAt ?? now,
      });
    }
    for (const agent of await this.store.listAgents()) this.#agents.set(agent.name, agent);
    const epochs = await this.store.getRevocationEpochs();
    this.#epochAll = epochs.all ?? 0;
    this.#epochByAgent = new Map(Object.entries(epochs.agents));
    // Revoked leases the proxy could still accept (not expired, allowing for the clock
    // skew it tolerates on `exp`), all of them. (This read the 10,000 newest leases
    // before; a busier node forgot older revocations at a restart.)
    const margin = Math.max(86_400_000, this.settings.clockSkewMs ?? 0);
    for (const jti of await this.store.listRevokedLeaseIds(now - margin)) {
      this.#revokedJtis.add(jti);
    }
  }

  /** Tells the cluster that this node rotated the signing keys. */
  async keysChanged(): Promise<void> {
    await this.#changed();
  }

  /** Records a change of this node's own and tells the cluster (see `onChange`). */
  async #changed(): Promise<void> {
    this.#localChanges++;
    await this.onChange?.();
  }

  /**
   * Re-reads what another node of a cluster may have changed: agents (roles, disabled),
   * revocations (leases, epochs) and signing keys. Calls made while one runs are coalesced
   * into one more. Revocations only ever grow here; an agent read is applied only when
   * no change of this node's own committed during the read (else it is read again).
   */
  refresh(): Promise<void> {
    if (this.#refreshing !== undefined) {
      this.#refreshAgain = true;
      return this.#refreshing;
    }
    const run = (async () => {
      try {
        do {
          this.#refreshAgain = false;
          await this.#refreshOnce();
        } while (this.#refreshAgain);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    this.#refreshing = run;
    return run;
  }

  async #refreshOnce(): Promise<void> {
    const now = this.clock();
    const margin = Math.max(86_400_000, this.settings.clockSkewMs ?? 0);
    for (;;) {
      const before = this.#localChanges;
      const [agents, epochs, revoked] = await Promise.all([
        this.store.listAgents(),
        this.store.getRevocationEpochs(),
        this.store.listRevokedLeaseIds(now - margin),
      ]);
      this.#epochAll = Math.max(this.#epochAll, epochs.all ?? 0);
      for (const [agent, at] of Object.entries(epochs.agents)) {
        this.#epochByAgent.set(agent, Math.max(this.#epochByAgent.get(agent) ?? 0, at));
      }
      for (const jti of revoked) this.#revokedJtis.add(jti);
      if (this.#localChanges !== before) continue;
      this.#agents = new Map(agents.map((a) => [a.name, a]));
      break;
    }
    await this.keys.refresh();
  }

  // ---- agents -------------------------------------------------------------------------

  /**
   * Applies the agents of a reloaded nexus.yaml: new and changed ones are written, roles
   * take effect for leases issued from now on. An agent removed from the file is disabled
   * (and its leases revoked) rather than deleted, so its audit history keeps its name.
   */
  async syncConfigAgents(
    agents: Readonly<Record<string, { readonly roles: readonly string[] }>>,
  ): Promise<void> {
    const now = this.clock();
    for (const [name, agent] of Object.entries(agents)) {
      const existing = this.#agents.get(name);
      const row = await this.store.upsertAgent({
        name,
        roles: [...agent.roles],
        source: 'config',
        createdAt: existing?.createdAt ?? now,
      });
      this.#agents.set(name, row);
      this.#localChanges++;
    }
    for (const row of [...this.#agents.values()]) {
      if (row.source === 'config' && !(row.name in agents) && !row.disabled) {
        await this.setAgentDisabled(row.name, true);
      }
    }
    await this.#changed();
  }

  agent(name: string): AgentRow | undefined {
    return this.#agents.get(name);
  }

  listAgents(): AgentRow[] {
    return [...this.#agents.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async createAgent(name: string, roles: readonly string[]): Promise<AgentRow> {
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) {
      throw new NexusError(
        'validation_failed',
        'agent name must be lowercase letters, digits, ".", "_" or "-"',
      );
    }
    if (this.#agents.has(name)) throw new NexusError('conflict', 'agent exists');
    const row: AgentRow = {
      name,
      roles: [...roles],
      disabled: false,
      source: 'api',
      createdAt: this.clock(),
    };
    await this.store.upsertAgent(row);
    this.#agents.set(name, row);
    this.#localChanges++;
    await this.#changed();
    return row;
  }

  /**
   * Disabling an agent also revokes every lease it holds and voids its outstanding
   * enrollment tokens (the store deletes them with the flag), so an enable later does not
   * bring back a token minted before the disable.
   */
  async setAgentDisabled(name: string, disabled: boolean): Promise<AgentRow> {
    const row = this.#agents.get(name);
    if (row === undefined) throw new NexusError('not_found', 'no such agent');
    await this.store.setAgentDisabled(name, disabled);
    const updated = { ...row, disabled };
    this.#agents.set(name, updated);
    this.#localChanges++;
    if (disabled) await this.revokeAgent(name);
    else await this.#changed();
    return updated;
  }

  // ---- enrollment and leases -------------------------------------------------------------

  async createEnrollmentToken(
    agent: string,
    options: { ttlMs?: number; act?: string; task?: string } = {},
  ): Promise<EnrollmentTokenResult> {
    const row = this.#agents.get(agent);
    if (row === undefined) throw new NexusError('not_found', 'no such agent');
    if (row.disabled) throw new NexusError('agent_disabled');
    const token = `nxe_${randomId(32)}`;
    const id = randomId(9);
    const now = this.clock();
    const expiresAt = now + (options.ttlMs ?? this.settings.enrollmentTtlMs);
    await this.store.createEnrollmentToken({
      id,
      agent,
      tokenHash: sha256Hex(token),
      act: options.act,
      task: options.task,
      expiresAt,
      createdAt: now,
    });
    return { token, id, agent, expiresAt };
  }

  /** `POST /v1/leases`: trades a one-time enrollment token and a public key for a lease. */
  async enroll(enrollmentToken: unknown, jwk: unknown): Promise<IssuedLease> {
    if (typeof enrollmentToken !== 'string' || enrollmentToken.length > 200) {
      throw new NexusError('enrollment_invalid');
    }
    const publicJwk = checkAgentJwk(jwk);
    const now = this.clock();
    const row = await this.store.consumeEnrollmentToken(sha256Hex(enrollmentToken), now);
    if (row === undefined) throw new NexusError('enrollment_invalid');
    return this.#issue(row.agent, publicJwk, { act: row.act, task: row.task, chainStartedAt: now });
  }

  /**
   * `POST /v1/leases/delegate` (spec §12.5): the holder of a verified lease obtains a
   * sub-lease for a sub-agent's own key, never wider than its own: roles a subset of its
   * scope, `exp` no later than its own, the same agent and task. `act` records who
   * delegated (the parent lease's `sub`, with the parent's own `act` nested), and
   * `nexus_delegation` lists the lease ids above it, so revoking any of them revokes the
   * sub-lease ({@link isRevoked}).
   */
  async delegate(verified: VerifiedRequest, request: unknown): Promise<IssuedLease> {
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      throw new NexusError('validation_failed', 'body is not a JSON object');
    }
    const r = request as DelegationRequest & { jwk?: unknown; ttl_seconds?: unknown };
    const publicJwk = checkAgentJwk(r.jwk);
    const parent = verified.claims;
    // MUST: never wider than the delegating lease (roles, services, intent patterns).
    const grant = narrowDelegation(parent, r);
    if (
      r.ttl_seconds !== undefined &&
      (typeof r.ttl_seconds !== 'number' ||
        !Number.isSafeInteger(r.ttl_seconds) ||
        r.ttl_seconds < 1)
    ) {
      throw new NexusError('validation_failed', 'ttl_seconds must be a positive integer');
    }
    const ancestors = [...delegationOf(parent), parent.jti];
    if (ancestors.length > MAX_DELEGATION_DEPTH) {
      throw new NexusError('validation_failed', 'delegation chain too deep');
    }
    const now = this.clock();
    const ttlMs = Math.min(
      r.ttl_seconds === undefined ? this.settings.leaseTtlMs : (r.ttl_seconds as number) * 1000,
      parent.exp * 1000 - now,
    );
    if (ttlMs < 2000) throw new NexusError('renewal_denied', 'the delegating lease ends too soon');
    const agentName = agentFromSub(parent.sub);
    if (agentName === undefined) throw new NexusError('lease_invalid');
    const issued = await this.#issue(agentName, publicJwk, {
      task: parent.nexus_task,
      chainStartedAt: now,
      ttlMs,
      delegation: {
        ancestors,
        grant,
        actor: { sub: parent.sub, ...(parent.act !== undefined ? { act: parent.act } : {}) },
      },
    });
    // A revocation that ran while this was issued may not have seen it: check again.
    if (this.isRevoked(issued.claims)) {
      await this.store.revokeLease(issued.claims.jti, this.clock());
      this.#revokedJtis.add(issued.claims.jti);
      throw new NexusError('lease_revoked');
    }
    return issued;
  }

  /** `POST /v1/leases/renew`: the request was verified against the current lease. */
  async renew(verified: VerifiedRequest): Promise<IssuedLease> {
    // A sub-lease is not renewed: a renewal would re-issue the agent's full roles without
    // its delegation (spec §12.5). The delegator delegates again.
    if (delegationOf(verified.claims).length > 0) {
      throw new NexusError('renewal_denied', 'a delegated lease is not renewed');
    }
    const now = this.clock();
    const current = await this.store.getLease(verified.leaseId);
    if (current === undefined) throw new NexusError('lease_invalid');
    const chainEnd = current.chainStartedAt + this.settings.leaseMaxLifetimeMs;
    const remaining = chainEnd - now;
    // Denied once the chain has reached its maximum lifetime: the current lease already
    // runs to the end of it, so a renewal could add nothing.
    if (remaining <= 0 || current.expiresAt >= Math.floor(chainEnd / 1000) * 1000) {
      throw new NexusError('renewal_denied');
    }
    const issued = await this.#issue(current.agent, current.publicJwk as JWK, {
      act: current.act,
      task: current.task,
      chainStartedAt: current.chainStartedAt,
      parentJti: current.jti,
      ttlMs: Math.min(this.settings.leaseTtlMs, remaining),
    });
    // A revocation of the chain that ran while this renewal was being issued may not
    // have seen the new lease: revoke it too, and refuse.
    if (
      this.#revokedJtis.has(current.jti) ||
      (await this.store.getLease(current.jti))?.revokedAt !== undefined
    ) {
      await this.store.revokeLease(issued.claims.jti, this.clock());
      this.#revokedJtis.add(issued.claims.jti);
      await this.#changed();
      throw new NexusError('lease_revoked');
    }
    return issued;
  }

  async #issue(
    agentName: string,
    publicJwk: JWK,
    chain: {
      act?: string;
      task?: string;
      chainStartedAt: number;
      parentJti?: string;
      ttlMs?: number;
      delegation?: {
        ancestors: string[];
        grant: DelegatedGrant;
        actor: { sub: string; act?: unknown };
      };
    },
  ): Promise<IssuedLease> {
    const agent = this.#agents.get(agentName);
    if (agent === undefined) throw new NexusError('enrollment_invalid');
    if (agent.disabled) throw new NexusError('agent_disabled');
    const now = this.clock();
    let iat = Math.floor(now / 1000);
    // A revocation by agent or of all covers the whole second it ran in (leases carry
    // second-resolution iat): a lease issued later in that second would be born revoked
    // (issue 16, the re-enrollment trap). It starts at the next second instead, well
    // within every verifier's lease skew (spec §12.3).
    if (this.#coveredByEpoch(agentName, iat * 1000)) iat += 1;
    const exp = Math.floor((now + (chain.ttlMs ?? this.settings.leaseTtlMs)) / 1000);
    if (exp <= iat) throw new NexusError(chain.parentJti ? 'renewal_denied' : 'internal_error');
    const jti = randomId(16);
    const claims: LeaseClaims = {
      iss: this.settings.issuer,
      sub: `nexus://${this.settings.trustDomain}/agent/${agentName}`,
      aud: this.settings.proxyUrl,
      iat,
      nbf: iat,
      exp,
      jti,
      cnf: { jwk: publicJwk as LeaseClaims['cnf']['jwk'] },
      scope: (chain.delegation?.grant.roles ?? agent.roles).join(' '),
      ...(chain.act !== undefined ? { act: { sub: chain.act } } : {}),
      ...(chain.delegation !== undefined
        ? {
            act: chain.delegation.actor,
            nexus_delegation: chain.delegation.ancestors,
            ...(chain.delegation.grant.services !== undefined
              ? { nexus_services: chain.delegation.grant.services }
              : {}),
            ...(chain.delegation.grant.intents !== undefined
              ? { nexus_intents: chain.delegation.grant.intents }
              : {}),
          }
        : {}),
      ...(chain.task !== undefined ? { nexus_task: chain.task } : {}),
    };
    const key = this.keys.active();
    const lease = await new SignJWT({ ...claims } as never)
      .setProtectedHeader({ alg: key.alg, typ: 'wit+jwt', kid: key.kid })
      .sign(key.privateKey);
    const row: LeaseRow = {
      jti,
      agent: agentName,
      publicJwk,
      jkt: await calculateJwkThumbprint(publicJwk),
      issuedAt: iat * 1000,
      expiresAt: exp * 1000,
      chainStartedAt: chain.chainStartedAt,
      parentJti: chain.parentJti,
      // A sub-lease records its delegator (the listing shows who delegated).
      act: chain.delegation?.actor.sub ?? chain.act,
      task: chain.task,
      // So the listing can apply the proxy's rule: revoked with any lease above it.
      ...(chain.delegation !== undefined ? { delegation: chain.delegation.ancestors } : {}),
    };
    await this.store.insertLease(row);
    return { lease, claims, expiresAt: exp * 1000 };
  }

  // ---- revocation ------------------------------------------------------------------------

  /** True when the lease was revoked by id, by its agent or by the kill switch. */
  isRevoked(claims: LeaseClaims): boolean {
    return (
      this.#revokedJtis.has(claims.jti) ||
      this.#coveredByEpoch(agentFromSub(claims.sub), claims.iat * 1000) ||
      // A sub-lease falls with any lease it was delegated from (spec §12.5).
      delegationOf(claims).some((jti) => this.#revokedJtis.has(jti))
    );
  }

  /** The revocation-epoch rule: issued at or before the kill switch or its agent's epoch. */
  #coveredByEpoch(agent: string | undefined, issuedMs: number): boolean {
    if (issuedMs <= this.#epochAll) return true;
    const epoch = agent === undefined ? undefined : this.#epochByAgent.get(agent);
    return epoch !== undefined && issuedMs <= epoch;
  }

  /**
   * Revokes a lease with its whole renewal chain: the leases it was renewed from and every
   * renewal made from any of them. They carry the same key and agent, so revoking only
   * the lease the operator saw would leave its holder a parent to renew again, or a
   * renewal already made.
   */
  async revokeLease(jti: string): Promise<void> {
    // not_found for an unknown jti comes from the store.
    for (const id of await this.store.revokeLeaseChain(jti, this.clock())) {
      this.#revokedJtis.add(id);
    }
    await this.#changed();
  }

  async revokeAgent(name: string): Promise<void> {
    if (!this.#agents.has(name)) throw new NexusError('not_found', 'no such agent');
    // Leases carry second-resolution `iat`: the epoch covers the whole current second
    // (a lease issued later in that same second is revoked too: safe, and brief).
    const at = Math.floor(this.clock() / 1000) * 1000;
    await this.store.setRevocationEpoch({ agent: name }, at);
    this.#epochByAgent.set(name, Math.max(this.#epochByAgent.get(name) ?? 0, at));
    await this.#changed();
  }

  async revokeAll(): Promise<void> {
    const at = Math.floor(this.clock() / 1000) * 1000;
    await this.store.setRevocationEpoch('all', at);
    this.#epochAll = Math.max(this.#epochAll, at);
    await this.#changed();
  }

  async listLeases(filter: {
    agent?: string;
    active?: boolean;
    limit?: number;
  }): Promise<(LeaseRow & { revoked: boolean })[]> {
    const now = this.clock();
    const active = filter.active !== false;
    const rows = await this.store.listLeases({
      agent: filter.agent,
      activeAt: active ? now : undefined,
      limit: filter.limit ?? 100,
    });
    const listed = [];
    for (const r of rows) {
      listed.push({
        ...r,
        revoked:
          r.revokedAt !== undefined ||
          this.#coveredByEpoch(r.agent, r.issuedAt) ||
          (await this.#ancestorRevoked(r, now)),
      });
    }
    // The store's active filter knows revocations by id and epoch only.
    return active ? listed.filter((r) => !r.revoked) : listed;
  }

  /**
   * The proxy's rule (isRevoked) for a listed row: a sub-lease falls with any lease above
   * it. Those end no earlier than the sub-lease, so while it is live the revoked set holds
   * them; an expired row's ancestors may predate the set (loaded with a margin at start)
   * and are read from the store.
   */
  async #ancestorRevoked(row: LeaseRow, now: number): Promise<boolean> {
    const ancestors = row.delegation ?? [];
    if (ancestors.some((jti) => this.#revokedJtis.has(jti))) return true;
    if (row.expiresAt > now) return false;
    for (const jti of ancestors) {
      if ((await this.store.getLease(jti))?.revokedAt !== undefined) return true;
    }
    return false;
  }

  // ---- audit checkpoints ---------------------------------------------------------------------

  /** Signs an audit checkpoint payload with the active Authority key (compact JWS). */
  async signCheckpoint(payloadText: string): Promise<{ kid: string; jws: string }> {
    const key = this.keys.active();
    const jws = await new CompactSign(new TextEncoder().encode(payloadText))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'nexus-checkpoint+jws' })
      .sign(key.privateKey);
    return { kid: key.kid, jws };
  }

  /** Verifies a checkpoint JWS against the Authority keys; returns its payload or undefined. */
  async verifyCheckpoint(jws: string): Promise<Record<string, unknown> | undefined> {
    try {
      const header = decodeProtectedHeader(jws);
      const key = this.keys.publicKey(header.kid, { ignoreExpiry: true });
      if (key === undefined || (header.alg !== 'EdDSA' && header.alg !== 'ES256')) return undefined;
      const { payload } = await compactVerify(jws, key, { algorithms: ['EdDSA', 'ES256'] });
      return JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  // ---- discovery -------------------------------------------------------------------------

  discovery(): Record<string, unknown> {
    const issuer = this.settings.issuer;
    return {
      spec_version: 'nexus/1',
      issuer,
      proxy_url: this.settings.proxyUrl,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      lease_endpoint: `${issuer}/v1/leases`,
      renewal_endpoint: `${issuer}/v1/leases/renew`,
      revocation_endpoint: `${issuer}/v1/leases/revoke`,
      delegation_endpoint: `${issuer}/v1/leases/delegate`,
      lease_algorithms: ['EdDSA', 'ES256'],
      signature_algorithms: ['ed25519', 'ecdsa-p256-sha256'],
      digest_algorithms: ['sha-256', 'sha-512'],
      max_signature_window: 60,
      // Accepted request-signature profiles, newest first (spec §4.7: nexus/1 deprecated).
      signature_profiles: [...SIGNATURE_PROFILES],
      // Problems are signed by a JWKS key under this tag, bound to the request (spec §10.4).
      response_signature_tag: RESPONSE_SIGNATURE_TAG,
      // What is signed so: Nexus's own refusals and the upstream answers it relays.
      signed_responses: ['refusal', 'relayed'],
    };
  }
}

/** The most a delegation chain may nest (sub-lease of a sub-lease ...). */
const MAX_DELEGATION_DEPTH = 8;

/** The lease ids a lease was delegated from, root first (`nexus_delegation`), or none. */
export function delegationOf(claims: LeaseClaims): string[] {
  const d = claims.nexus_delegation;
  return Array.isArray(d) && d.every((x) => typeof x === 'string') ? (d as string[]) : [];
}

/**
 * The lease's roles that the agent still has: a role taken away (config reload, admin API)
 * stops counting at once, not at the next renewal; one added counts from the next lease.
 */
export function rolesHeld(scope: string, agentRoles: readonly string[]): string[] {
  return scope.split(' ').filter((r) => r !== '' && agentRoles.includes(r));
}

/** The audit record's `delegation`: a sub-lease's chain, or undefined (left out) for a lease. */
export function auditDelegation(claims: LeaseClaims | undefined): string[] | undefined {
  const chain = claims === undefined ? [] : delegationOf(claims);
  return chain.length > 0 ? [...chain] : undefined;
}

/** `nexus://<trust-domain>/agent/<name>` -> name. */
export function agentFromSub(sub: string): string | undefined {
  const m = /^nexus:\/\/[^/]+\/agent\/([^/]+)$/.exec(sub);
  return m?.[1];
}
