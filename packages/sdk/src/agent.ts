/**
 * The agent client: enrolls with an in-memory key, keeps its lease renewed, and signs
 * every request it sends through the Nexus proxy.
 *
 * MUST: the private key is generated non-extractable and never leaves this object. The
 * lease is sent only in `Workload-Identity-Token`, never in `Authorization`.
 */
import {
  generateAgentKey,
  isNexusError,
  signRequest,
  verifyRelayedResponseSignature,
  verifyResponseSignature,
  type CryptoKey,
  type LeaseClaims,
  type SignatureProfile,
} from '@nexus-proxy/protocol';
import { NexusAgentError, errorFromResponse, nexusRefusalCode } from './errors.js';
import { checkedTarget } from './target.js';

export type AgentKeyAlgorithm = 'ed25519' | 'ecdsa-p256';

export interface EnrollOptions {
  /** The Authority URL (the `issuer`), e.g. `http://127.0.0.1:7070`. */
  readonly authority: string;
  /** The one-time enrollment token an operator created for this agent. */
  readonly enrollmentToken: string;
  /** Agent key algorithm (default `ed25519`). */
  readonly keyAlgorithm?: AgentKeyAlgorithm;
  /**
   * Request-signature profile. Default: `nexus/1.1` (the current WIMSE draft), or
   * `nexus/1` when the node's discovery document lists only that (an older node).
   */
  readonly signatureProfile?: SignatureProfile;
  /** Renew automatically before expiry (default true). */
  readonly autoRenew?: boolean;
  /** Injected for tests. */
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  /** Called when automatic renewal fails for good (e.g. `renewal_denied`). */
  readonly onRenewalError?: (err: NexusAgentError) => void;
  /**
   * Accept unsigned answers from a node whose discovery document does not announce signed
   * relayed answers (`signed_responses` without `relayed`: a node older than edition 1.1,
   * spec §10.4). Default false: every answer of `fetch()` must carry Nexus's signature, and
   * one without it is `response_unverified`. Has no effect on a node that announces them:
   * there an unsigned answer is always `response_unverified`.
   */
  readonly acceptUnsignedResponses?: boolean;
}

/** What a sub-lease is narrowed to (spec §12.5); every member is optional. */
export interface DelegateOptions {
  /** Roles, a subset of the delegating lease's (default all of them). */
  readonly roles?: string[];
  /** Services the sub-agent may call, a subset of the delegating lease's if it has any. */
  readonly services?: string[];
  /**
   * A glob every intent of the sub-agent must match (`*` any characters, case-insensitive,
   * whole intent), in addition to the delegating lease's own patterns.
   */
  readonly intentPattern?: string;
  /** Lifetime in seconds (default the node's lease TTL, never past the delegator's `exp`). */
  readonly ttlSeconds?: number;
}

export interface AgentFetchInit {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** The body is buffered: its digest is signed. */
  readonly body?: string | Uint8Array;
  /** The declared purpose of the call (Nexus-Intent), audited and matched by policy. */
  readonly intent?: string;
  readonly signal?: AbortSignal;
}

/** One service as `GET /v1/agent/services` describes it (docs/spec). */
export interface AgentService {
  readonly name: string;
  /** Variable name -> `{base_url}[/path]` or `{dummy_key}`. */
  readonly env: Readonly<Record<string, string>>;
  /** Host names the service owns (forward-proxy mode). */
  readonly hosts: readonly string[];
  /** The upstream URL's path, `''` when none. */
  readonly path_prefix: string;
}

function isAgentService(v: unknown): v is AgentService {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return (
    typeof s.name === 'string' &&
    typeof s.env === 'object' &&
    s.env !== null &&
    Object.values(s.env).every((x) => typeof x === 'string') &&
    Array.isArray(s.hosts) &&
    s.hosts.every((h) => typeof h === 'string') &&
    typeof s.path_prefix === 'string'
  );
}

function decodeClaims(lease: string): LeaseClaims {
  const part = lease.split('.')[1];
  if (part === undefined) throw new NexusAgentError('lease_invalid', 'lease is not a JWT');
  const bin = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as LeaseClaims;
}

/** A enrolled agent. Create with {@link enroll}. */
export class NexusAgent {
  #lease: string;
  #claims: LeaseClaims;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly proxyUrl: string;
  /**
   * The largest request body the node accepts (its discovery document's
   * `max_body_bytes`), or undefined when it did not say. A larger body is refused here with
   * `body_too_large`, before anything is sent.
   */
  readonly maxBodyBytes: number | undefined;
  /** The profile this agent signs with (spec §4.7). */
  readonly signatureProfile: SignatureProfile;

  /** @internal */
  constructor(
    private readonly key: CryptoKey,
    lease: string,
    proxyUrl: string,
    private readonly options: EnrollOptions,
    discovered: Discovered = {},
  ) {
    this.#lease = lease;
    this.#claims = decodeClaims(lease);
    this.proxyUrl = proxyUrl.replace(/\/$/, '');
    this.maxBodyBytes = discovered.maxBodyBytes;
    this.signatureProfile =
      options.signatureProfile ?? discovered.signatureProfile ?? DEFAULT_PROFILE;
    this.#discovered = discovered;
    this.#jwksUri = discovered.responseSigning ? discovered.jwksUri : undefined;
    this.#jwks = discovered.jwks ?? [];
    this.#schedule();
  }

  readonly #discovered: Discovered;

  /**
   * Mints a sub-lease for a sub-agent (spec §12.5) and returns that sub-agent: a new key
   * generated here (non-extractable), a lease never wider than this one (`roles` a subset
   * of this lease's roles, default all of them; `services` a subset of this lease's
   * delegated services, default the same; `intentPattern` added to this lease's intent
   * patterns; lifetime `ttlSeconds`, default the node's lease TTL, never past this lease's
   * `exp`), `act` naming this agent as the delegator. A role or service this lease lacks
   * is `delegation_too_wide`. Revoking this lease revokes the sub-lease. A sub-lease is
   * not renewed.
   *
   * @example
   * const reader = await agent.delegate({
   *   roles: ['reader'], services: ['github'], intentPattern: 'triage *', ttlSeconds: 120,
   * });
   * await reader.fetch('github', '/repos/acme/app/issues', { intent: 'read for triage' });
   */
  async delegate(
    options: DelegateOptions & { keyAlgorithm?: AgentKeyAlgorithm } = {},
  ): Promise<NexusAgent> {
    const { privateKey, publicJwk } = await generateAgentKey(options.keyAlgorithm ?? 'ed25519');
    const { lease, proxyUrl } = await this.delegateKey(publicJwk, options);
    return new NexusAgent(
      privateKey,
      lease,
      proxyUrl,
      { ...this.options, autoRenew: false },
      this.#discovered,
    );
  }

  /**
   * {@link delegate} for a key held elsewhere (a sub-agent in another process, e.g. a
   * `nexus run` inside `nexus run`): mints the sub-lease for `publicJwk` and returns it.
   * Pass it with the private key to {@link fromLease} in the sub-agent's process.
   */
  async delegateKey(
    publicJwk: Record<string, unknown>,
    options: DelegateOptions = {},
  ): Promise<{ lease: string; proxyUrl: string; authority: string }> {
    if (this.#closed) throw new NexusAgentError('agent_closed', 'the agent was closed');
    const url = `${this.options.authority.replace(/\/$/, '')}/v1/leases/delegate`;
    const sent = await this.#signedFetch(url, {
      method: 'POST',
      intent: 'lease delegation',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        jwk: publicJwk,
        ...(options.roles !== undefined ? { roles: options.roles } : {}),
        ...(options.ttlSeconds !== undefined ? { ttl_seconds: options.ttlSeconds } : {}),
        ...(options.services !== undefined ? { services: options.services } : {}),
        ...(options.intentPattern !== undefined ? { intent_pattern: options.intentPattern } : {}),
      }),
    });
    const res = sent.res;
    if (!res.ok) throw (await this.#refusal(sent)) ?? (await errorFromResponse(res));
    const body = (await res.json()) as { lease: string; proxy_url: string };
    return { lease: body.lease, proxyUrl: body.proxy_url, authority: this.options.authority };
  }

  /** The Authority JWKS URL when the node signs its refusals (spec §10.4), else undefined. */
  readonly #jwksUri: string | undefined;
  #jwks: ReadonlyArray<Record<string, unknown>>;

  /**
   * The refusal a response carries, as an error to throw, or undefined for any other
   * response (left unread). When the node signs its refusals (its discovery document
   * names `response_signature_tag`), a `Nexus-Error` response MUST carry a valid signature
   * bound to this request's nonce (spec §10.4); otherwise it is not Nexus's word, and the
   * agent MUST NOT act on it: `response_unverified`, never the code it claims (so no
   * re-signing on a forged `signature_expired`, no stopped renewal on a forged
   * `renewal_denied`).
   */
  async #refusal(sent: SentRequest): Promise<NexusAgentError | undefined> {
    const { res } = sent;
    if (nexusRefusalCode(res) === undefined) return undefined;
    if (this.#jwksUri === undefined) return errorFromResponse(res);
    const body = new Uint8Array(await res.arrayBuffer());
    const verify = () =>
      verifyResponseSignature({
        status: res.status,
        headers: [...res.headers],
        body,
        request: { method: sent.method, url: sent.url, nonce: sent.nonce },
        keys: this.#jwks,
        now: this.options.now,
      });
    try {
      await this.#verifyWithFreshKeys(verify, this.#jwksUri);
    } catch (err) {
      return new NexusAgentError(
        'response_unverified',
        'response_unverified: a refusal without a valid Nexus signature was ignored',
        // Not Nexus's answer, whatever it claims: a bad gateway, not a refusal.
        { status: 502, cause: err },
      );
    }
    return errorFromResponse(new Response(body, { status: res.status, headers: res.headers }));
  }

  /**
   * Runs a response-signature check; on `signature_invalid` (possibly a key rotated in
   * since enrollment) fetches the JWKS once more and checks again.
   */
  async #verifyWithFreshKeys(verify: () => Promise<unknown>, jwksUri: string): Promise<void> {
    try {
      await verify();
    } catch (err) {
      if (!isNexusError(err) || err.code !== 'signature_invalid') throw err;
      this.#jwks = (await fetchJwks(this.#fetch(), jwksUri)) ?? this.#jwks;
      await verify();
    }
  }

  /**
   * The upstream's answer, once its Nexus signature verified (spec §10.4): `Nexus-Origin:
   * upstream`, bound to this request's nonce, by an Authority key. Any other answer (no or a
   * bad signature: an on-path party, or a node that does not sign) is `response_unverified`
   * and its body is discarded, unless the node does not announce signed relayed answers and
   * the agent was made with `acceptUnsignedResponses` (an older node).
   */
  async #relayed(sent: SentRequest): Promise<Response> {
    const { res } = sent;
    if (this.#discovered.relayedSigning !== true || this.#jwksUri === undefined) {
      if (this.options.acceptUnsignedResponses === true) return res;
      await res.body?.cancel();
      throw new NexusAgentError(
        'response_unverified',
        'response_unverified: the node does not sign relayed answers (acceptUnsignedResponses is off)',
        { status: 502 },
      );
    }
    const verify = () =>
      verifyRelayedResponseSignature({
        status: res.status,
        headers: [...res.headers],
        request: { method: sent.method, url: sent.url, nonce: sent.nonce },
        keys: this.#jwks,
        now: this.options.now,
      });
    try {
      await this.#verifyWithFreshKeys(verify, this.#jwksUri);
    } catch (err) {
      await res.body?.cancel();
      throw new NexusAgentError(
        'response_unverified',
        'response_unverified: an answer without a valid Nexus signature was discarded',
        { status: 502, cause: err },
      );
    }
    return res;
  }

  /** The current lease token (not a secret on its own: useless without the key). */
  get lease(): string {
    return this.#lease;
  }

  get claims(): LeaseClaims {
    return this.#claims;
  }

  /** The agent's name, from the lease subject. */
  get name(): string {
    return this.#claims.sub.slice(this.#claims.sub.lastIndexOf('/') + 1);
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }

  #fetch(): typeof fetch {
    return this.options.fetch ?? fetch;
  }

  #schedule(): void {
    if (this.options.autoRenew === false || this.#closed) return;
    const lifetime = (this.#claims.exp - this.#claims.iat) * 1000;
    const renewAt = this.#claims.iat * 1000 + lifetime * (2 / 3);
    const delay = Math.max(1000, renewAt - this.#now());
    this.#timer = setTimeout(() => {
      this.renew().catch((err: unknown) => {
        const e =
          err instanceof NexusAgentError
            ? err
            : new NexusAgentError('renewal_failed', 'renewal failed', { cause: err });
        if (
          e.code === 'renewal_denied' ||
          e.code === 'lease_revoked' ||
          e.code === 'agent_disabled'
        ) {
          this.options.onRenewalError?.(e);
          return;
        }
        // Transient: try again shortly while the lease is still valid.
        if (this.#claims.exp * 1000 > this.#now() + 2000) {
          this.#timer = setTimeout(() => this.#schedule(), 2000);
          this.#timer.unref?.();
        } else {
          this.options.onRenewalError?.(e);
        }
      });
    }, delay);
    this.#timer.unref?.();
  }

  /** Proves possession of the key and obtains a fresh lease (same key, new id). */
  async renew(): Promise<void> {
    const url = `${this.options.authority.replace(/\/$/, '')}/v1/leases/renew`;
    const sent = await this.#signedFetch(url, { method: 'POST', intent: 'lease renewal' });
    const res = sent.res;
    if (!res.ok) throw (await this.#refusal(sent)) ?? (await errorFromResponse(res));
    const body = (await res.json()) as { lease: string };
    this.#lease = body.lease;
    this.#claims = decodeClaims(body.lease);
    this.#schedule();
  }

  async #signedFetch(url: string, init: AgentFetchInit): Promise<SentRequest> {
    const method = (init.method ?? 'GET').toUpperCase();
    const body = typeof init.body === 'string' ? new TextEncoder().encode(init.body) : init.body;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(init.headers ?? {})) headers[k.toLowerCase()] = v;
    if (body !== undefined && body.length > 0 && headers['content-type'] === undefined) {
      headers['content-type'] = 'application/octet-stream';
    }
    // The nonce is kept: a signed refusal must name it (wimse-req-nonce, spec §10.4).
    const nonce = base64Url(globalThis.crypto.getRandomValues(new Uint8Array(16)));
    const signed = await signRequest({
      method,
      url,
      headers,
      body,
      lease: this.#lease,
      key: this.key,
      intent: init.intent ?? '',
      now: this.options.now,
      profile: this.signatureProfile,
      nonce,
    });
    try {
      const res = await this.#fetch()(url, {
        method,
        headers: { ...headers, ...signed },
        body: body !== undefined && body.length > 0 ? body : undefined,
        redirect: 'manual',
        signal: init.signal,
      });
      return { res, method, url, nonce };
    } catch (err) {
      throw new NexusAgentError('proxy_unreachable', 'could not reach the Nexus proxy', {
        cause: err,
      });
    }
  }

  /**
   * Signs and sends a request to `service` at `path` through the proxy. Resolves with the
   * upstream's (scrubbed) response, streamed, whatever its status or body; rejects with a
   * {@link NexusAgentError} when Nexus itself refused the request (policy, signature,
   * lease...), which only the proxy's `Nexus-Error` field says (an upstream cannot set it:
   * the proxy removes every `Nexus-*` field of the upstream's response).
   *
   * MUST: a request is sent again only after Nexus itself refused it before forwarding
   * (`signature_expired` from a proxy that just restarted); an upstream's answer, even one
   * imitating Nexus, is never a reason to resend (a POST would act twice).
   *
   * @example
   * const res = await agent.fetch('github', '/repos/acme/app/issues', { intent: 'triage' });
   */
  async fetch(service: string, path: string, init: AgentFetchInit = {}): Promise<Response> {
    if (this.#closed) throw new NexusAgentError('agent_closed', 'the agent was closed');
    // MUST: checked before signing; nothing outside `/{service}/...` is ever signed here.
    const url = this.proxyUrl + checkedTarget(service, path);
    const max = this.maxBodyBytes;
    // A string of n UTF-16 units is at most 3n UTF-8 bytes: most need no encoding here.
    const size =
      typeof init.body === 'string'
        ? max !== undefined && init.body.length * 3 > max
          ? new TextEncoder().encode(init.body).length
          : undefined
        : init.body?.length;
    if (size !== undefined && max !== undefined && size > max) {
      // The proxy would refuse it with 413 anyway; refusing here spares the upload (and a
      // client that is still uploading may only see the connection close).
      throw new NexusAgentError('body_too_large', 'body_too_large: body over the node limit', {
        status: 413,
        detail: `the body is ${size} bytes; the node accepts at most ${max}`,
      });
    }
    let sent = await this.#signedFetch(url, init);
    for (let retry = 0; ; retry++) {
      const refusal = await this.#refusal(sent);
      if (refusal === undefined) return this.#relayed(sent);
      // A proxy that has just restarted refuses signatures that could predate it (its
      // replay cache is new); a fresh signature a moment later is accepted. Nexus decides
      // this before forwarding, so the upstream has seen nothing yet. Only a verified
      // refusal counts (#refusal).
      if (refusal.code !== 'signature_expired' || refusal.status !== 401 || retry >= 8) {
        throw refusal;
      }
      await new Promise((r) => setTimeout(r, 1000));
      sent = await this.#signedFetch(url, init);
    }
  }

  /**
   * Signs a body-less request to `service` at `path` without sending it, for a request
   * `fetch` cannot make: a WebSocket handshake (`nexus run` relays its child's). Returns the
   * proxy URL and the headers to send: `init.headers` plus the lease, intent and signature.
   * Hop-by-hop fields (`Connection`, `Upgrade`) and `Sec-WebSocket-*` are the caller's to
   * add; they are not signed (spec §8, WebSocket upgrades).
   *
   * @example
   * const { url, headers } = await agent.signedRequest('chat', '/stream', { intent: 'chat' });
   */
  async signedRequest(
    service: string,
    path: string,
    init: { method?: string; headers?: Record<string, string>; intent?: string } = {},
  ): Promise<{ url: string; headers: Record<string, string> }> {
    if (this.#closed) throw new NexusAgentError('agent_closed', 'the agent was closed');
    // MUST: checked before signing; nothing outside `/{service}/...` is ever signed here.
    const url = this.proxyUrl + checkedTarget(service, path);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(init.headers ?? {})) headers[k.toLowerCase()] = v;
    const signed = await signRequest({
      method: (init.method ?? 'GET').toUpperCase(),
      url,
      headers,
      lease: this.#lease,
      key: this.key,
      intent: init.intent ?? '',
      now: this.options.now,
      profile: this.signatureProfile,
    });
    return { url, headers: { ...headers, ...signed } };
  }

  /**
   * The services this agent's policy can allow, with the environment variables their SDKs
   * read and the host names they own (`GET /v1/agent/services`, signed like a renewal).
   * `nexus run` builds base-URL and forward-proxy mode from it. Listing grants nothing: the
   * proxy still decides each request.
   */
  async services(): Promise<AgentService[]> {
    const url = `${this.options.authority.replace(/\/$/, '')}/v1/agent/services`;
    const sent = await this.#signedFetch(url, { method: 'GET', intent: 'service discovery' });
    const res = sent.res;
    if (!res.ok) throw (await this.#refusal(sent)) ?? (await errorFromResponse(res));
    const body = (await res.json()) as { services?: unknown };
    if (!Array.isArray(body.services)) {
      throw new NexusAgentError('invalid_response', 'the node sent no service list');
    }
    return body.services.filter(isAgentService);
  }

  /**
   * Asks the node for a blind tunnel to `host:port`, a host no service owns
   * (`POST /v1/agent/passthrough`, spec §12.6). The node decides from its `passthrough:`
   * rules and audits the decision before it answers; resolves with the allowing rule's id,
   * or throws the refusal (`host_unowned`). `nexus run`'s forward proxy opens the tunnel
   * only after this resolves. The tunnel carries no credential and is not inspected.
   */
  async passthrough(host: string, port: number): Promise<string> {
    const url = `${this.options.authority.replace(/\/$/, '')}/v1/agent/passthrough`;
    const sent = await this.#signedFetch(url, {
      method: 'POST',
      intent: `passthrough tunnel to ${host}:${port}`.slice(0, 512),
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ host, port }),
    });
    const res = sent.res;
    if (!res.ok) throw (await this.#refusal(sent)) ?? (await errorFromResponse(res));
    const body = (await res.json()) as { rule?: unknown };
    if (typeof body.rule !== 'string') {
      throw new NexusAgentError('invalid_response', 'the node sent no passthrough rule');
    }
    return body.rule;
  }

  /**
   * Revokes this agent's lease, with its whole renewal chain, at the Authority
   * (`POST /v1/leases/revoke`, signed like a renewal: only the key's holder can do it), and
   * stops renewal. Resolves also when the lease was already revoked or has expired: it is
   * unusable either way. Call it when the agent's work is done, so that its lease does not
   * outlive its key.
   *
   * @example
   * try { await work(agent); } finally { await agent.revoke(); }
   */
  async revoke(): Promise<void> {
    this.close();
    const url = `${this.options.authority.replace(/\/$/, '')}/v1/leases/revoke`;
    const sent = await this.#signedFetch(url, { method: 'POST', intent: 'lease revocation' });
    const res = sent.res;
    if (res.ok) {
      await res.body?.cancel();
      return;
    }
    const err = (await this.#refusal(sent)) ?? (await errorFromResponse(res));
    if (err.code === 'lease_revoked' || err.code === 'lease_expired') return;
    throw err;
  }

  /** Stops renewal. The lease simply expires (see {@link NexusAgent.revoke}). */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}

/**
 * Enrolls an agent: generates a non-extractable key pair in memory, trades the one-time
 * enrollment token and the public key for a lease, and returns a ready agent.
 *
 * @example
 * const agent = await enroll({ authority: 'http://127.0.0.1:7070', enrollmentToken });
 * const res = await agent.fetch('echo', '/hello', { intent: 'say hello' });
 */
export async function enroll(options: EnrollOptions): Promise<NexusAgent> {
  const { privateKey, publicJwk } = await generateAgentKey(options.keyAlgorithm ?? 'ed25519');
  const f = options.fetch ?? fetch;
  let res: Response;
  try {
    res = await f(`${options.authority.replace(/\/$/, '')}/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollment_token: options.enrollmentToken, jwk: publicJwk }),
    });
  } catch (err) {
    throw new NexusAgentError('proxy_unreachable', 'could not reach the Nexus Authority', {
      cause: err,
    });
  }
  if (!res.ok) throw await errorFromResponse(res);
  const body = (await res.json()) as { lease: string; proxy_url: string };
  return new NexusAgent(
    privateKey,
    body.lease,
    body.proxy_url,
    options,
    await discover(f, options.authority),
  );
}

/**
 * The agent for a lease obtained by delegation (`delegateKey` in another process) and the
 * private key it was minted for. Reads the node's discovery document like {@link enroll};
 * the lease is not renewed (a sub-lease never is).
 */
export async function fromLease(
  options: Omit<EnrollOptions, 'enrollmentToken'> & {
    readonly key: CryptoKey;
    readonly lease: string;
    readonly proxyUrl: string;
  },
): Promise<NexusAgent> {
  const f = options.fetch ?? fetch;
  return new NexusAgent(
    options.key,
    options.lease,
    options.proxyUrl,
    { ...options, enrollmentToken: '', autoRenew: false },
    await discover(f, options.authority),
  );
}

const DEFAULT_PROFILE: SignatureProfile = 'nexus/1.1';

/** What the agent takes from the node's discovery document. */
interface Discovered {
  readonly maxBodyBytes?: number;
  readonly signatureProfile?: SignatureProfile;
  /** The node signs its refusals (`response_signature_tag`, spec §10.4). */
  readonly responseSigning?: boolean;
  /** The node also signs relayed answers (`signed_responses` lists `relayed`, §10.4). */
  readonly relayedSigning?: boolean;
  readonly jwksUri?: string;
  readonly jwks?: ReadonlyArray<Record<string, unknown>>;
}

/** A request as sent: what a signed refusal must be bound to. */
interface SentRequest {
  readonly res: Response;
  readonly method: string;
  readonly url: string;
  readonly nonce: string;
}

function base64Url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

/** The Authority's JWKS keys, or undefined when they cannot be read. */
async function fetchJwks(
  f: typeof fetch,
  uri: string,
): Promise<ReadonlyArray<Record<string, unknown>> | undefined> {
  try {
    const res = await f(uri);
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const doc = (await res.json()) as { keys?: unknown };
    return Array.isArray(doc.keys) ? (doc.keys as Array<Record<string, unknown>>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * From the node's discovery document: its request body limit (`max_body_bytes`) and the
 * signature profile to use: `nexus/1.1` when `signature_profiles` lists it, `nexus/1`
 * when the document has no `signature_profiles` (a node older than nexus/1.1 verifies
 * nexus/1 only) or lists only that. Nothing when it cannot be read (network): the proxy
 * still enforces its limit, and the agent signs nexus/1.1.
 */
async function discover(f: typeof fetch, authority: string): Promise<Discovered> {
  try {
    const res = await f(`${authority.replace(/\/$/, '')}/.well-known/nexus-configuration`);
    if (!res.ok) {
      await res.body?.cancel();
      return {};
    }
    const doc = (await res.json()) as {
      max_body_bytes?: unknown;
      signature_profiles?: unknown;
      response_signature_tag?: unknown;
      signed_responses?: unknown;
      jwks_uri?: unknown;
    };
    // A node that signs its refusals: from now on an unsigned "refusal" is not its word.
    const responseSigning =
      doc.response_signature_tag === 'nexus-response' && typeof doc.jwks_uri === 'string';
    const jwks = responseSigning ? await fetchJwks(f, doc.jwks_uri as string) : undefined;
    const n = doc.max_body_bytes;
    const profiles = Array.isArray(doc.signature_profiles) ? doc.signature_profiles : undefined;
    const onlyV1 = profiles === undefined || !profiles.includes('nexus/1.1');
    return {
      ...(typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? { maxBodyBytes: n } : {}),
      ...(onlyV1 ? { signatureProfile: 'nexus/1' as const } : {}),
      ...(responseSigning ? { responseSigning, jwksUri: doc.jwks_uri as string } : {}),
      ...(responseSigning &&
      Array.isArray(doc.signed_responses) &&
      doc.signed_responses.includes('relayed')
        ? { relayedSigning: true }
        : {}),
      ...(jwks ? { jwks } : {}),
    };
  } catch {
    return {};
  }
}
