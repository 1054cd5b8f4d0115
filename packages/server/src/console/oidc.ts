/**
 * OIDC login to the web console for people: the authorization code flow with PKCE, done
 * with `oauth4webapi` (discovery, state, PKCE, the token request, the ID token's `iss`,
 * `aud`, `exp`, `iat`, `nonce` and `azp` checks), and the ID token's signature checked
 * again with `jose` against the provider's JWKS (the spec allows skipping it over TLS; we
 * do not). The person's role comes from one claim (`roles_claim`, e.g. `groups`) mapped by
 * `admin.console.oidc.roles`; a person with no mapped value cannot log in.
 *
 * MUST: a flow is bound to the browser that started it (a random cookie, only its hash is
 * kept) and used once; it expires after 10 minutes. MUST NOT: the client secret, the code,
 * or any token reach a log line, a response or the browser; the ID token is dropped once
 * its claims are read.
 */
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { NexusError } from '@nexus-proxy/protocol';
import {
  CONSOLE_ROLES,
  type ConsoleOidcConfig,
  type ConsoleRole,
} from '../config/console-schema.js';
import type { Person } from '../admin/callers.js';
import { sha256Hex } from '../util/ids.js';

/** Reads the client secret from the vault (field `client_secret` of the named credential). */
export type ClientSecretSource = (credential: string) => Promise<string>;

/** A login in progress: what the callback checks the provider's answer against. */
export interface PendingFlow {
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  readonly createdAt: number;
}

const FLOW_TTL_MS = 10 * 60_000;
const MAX_FLOWS = 1000;

/**
 * Where the logins in progress are kept, under the hash of their binding cookie: this
 * process's {@link OidcFlows}, or under `nexus up --workers N` the primary's (the callback
 * may reach another worker than the start; app/worker-sessions.ts).
 */
export interface OidcFlowTable {
  put(key: string, flow: PendingFlow): void | Promise<void>;
  /** Removes and returns the flow under `key` (a flow is used once, whatever happens next). */
  take(key: string): PendingFlow | undefined | Promise<PendingFlow | undefined>;
}

/** The in-memory flow table: flows older than 10 minutes dropped, at most 1000 (oldest out). */
export class OidcFlows implements OidcFlowTable {
  readonly #flows = new Map<string, PendingFlow>();
  readonly #clock: () => number;

  constructor(clock: () => number) {
    this.#clock = clock;
  }

  put(key: string, flow: PendingFlow): void {
    const now = this.#clock();
    for (const [k, f] of this.#flows) if (now - f.createdAt >= FLOW_TTL_MS) this.#flows.delete(k);
    while (this.#flows.size >= MAX_FLOWS) {
      const oldest = this.#flows.keys().next().value;
      if (oldest === undefined) break;
      this.#flows.delete(oldest);
    }
    this.#flows.set(key, flow);
  }

  take(key: string): PendingFlow | undefined {
    const flow = this.#flows.get(key);
    this.#flows.delete(key);
    return flow;
  }
}

/** The highest role any of `values` grants, or undefined. */
export function roleFor(
  values: unknown,
  roles: ConsoleOidcConfig['roles'],
): ConsoleRole | undefined {
  const have = new Set(
    typeof values === 'string'
      ? [values]
      : Array.isArray(values)
        ? values.filter((v): v is string => typeof v === 'string')
        : [],
  );
  for (const role of [...CONSOLE_ROLES].reverse())
    if (roles[role].some((v) => have.has(v))) return role;
  return undefined;
}

/** One OIDC relying party for the console. */
export class ConsoleOidc {
  readonly #config: ConsoleOidcConfig;
  readonly #secret: ClientSecretSource;
  readonly #clock: () => number;
  readonly #flows: OidcFlowTable;
  #as: oauth.AuthorizationServer | undefined;
  #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  /** `flows`: where logins in progress are kept (default: this process's memory). */
  constructor(
    config: ConsoleOidcConfig,
    secret: ClientSecretSource,
    clock: () => number,
    flows: OidcFlowTable = new OidcFlows(clock),
  ) {
    this.#config = config;
    this.#secret = secret;
    this.#clock = clock;
    this.#flows = flows;
  }

  /** Plain http is allowed by the config only to a loopback issuer. */
  get #http(): { [oauth.allowInsecureRequests]?: boolean } {
    return this.#config.issuer.startsWith('http:') ? { [oauth.allowInsecureRequests]: true } : {};
  }

  get #client(): oauth.Client {
    return { client_id: this.#config.client_id };
  }

  async #server(): Promise<oauth.AuthorizationServer> {
    if (this.#as !== undefined) return this.#as;
    const issuer = new URL(this.#config.issuer);
    const res = await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...this.#http });
    const as = await oauth.processDiscoveryResponse(issuer, res);
    if (as.jwks_uri === undefined) throw new Error('the provider publishes no jwks_uri');
    this.#as = as;
    this.#jwks = createRemoteJWKSet(new URL(as.jwks_uri));
    return as;
  }

  /**
   * Starts a flow: returns the provider's authorize URL and the binding cookie's value
   * (random; the flow is kept under its hash).
   */
  async start(binding: string): Promise<string> {
    const as = await this.#server();
    if (as.authorization_endpoint === undefined)
      throw new Error('the provider publishes no authorization_endpoint');
    const flow: PendingFlow = {
      state: oauth.generateRandomState(),
      nonce: oauth.generateRandomNonce(),
      codeVerifier: oauth.generateRandomCodeVerifier(),
      createdAt: this.#clock(),
    };
    await this.#flows.put(sha256Hex(binding), flow);
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set('client_id', this.#config.client_id);
    url.searchParams.set('redirect_uri', this.#config.redirect_uri);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', this.#config.scopes.join(' '));
    url.searchParams.set('state', flow.state);
    url.searchParams.set('nonce', flow.nonce);
    url.searchParams.set(
      'code_challenge',
      await oauth.calculatePKCECodeChallenge(flow.codeVerifier),
    );
    url.searchParams.set('code_challenge_method', 'S256');
    return url.href;
  }

  /**
   * Completes a flow from the callback's query: the person, with their role.
   *
   * @throws NexusError `unauthorized` (no such flow, a provider error, a token or ID token
   *   that fails a check); `role_forbidden` (no role for the person). The cause is for the
   *   log only.
   */
  async finish(binding: string | undefined, query: URLSearchParams): Promise<Person> {
    const key = binding === undefined ? undefined : sha256Hex(binding);
    // Used once, whatever happens next.
    const flow = key === undefined ? undefined : await this.#flows.take(key);
    if (flow === undefined || this.#clock() - flow.createdAt >= FLOW_TTL_MS)
      throw new NexusError('unauthorized', 'no login in progress in this browser');
    try {
      const as = await this.#server();
      const client = this.#client;
      const params = oauth.validateAuthResponse(as, client, query, flow.state);
      const auth = oauth.ClientSecretBasic(
        await this.#secret(this.#config.client_secret_credential),
      );
      const res = await oauth.authorizationCodeGrantRequest(
        as,
        client,
        auth,
        params,
        this.#config.redirect_uri,
        flow.codeVerifier,
        this.#http,
      );
      const tokens = await oauth.processAuthorizationCodeResponse(as, client, res, {
        expectedNonce: flow.nonce,
        requireIdToken: true,
      });
      const claims = oauth.getValidatedIdTokenClaims(tokens);
      if (claims === undefined || tokens.id_token === undefined) throw new Error('no ID token');
      const jwks = this.#jwks;
      if (jwks === undefined) throw new Error('no JWKS');
      await jwtVerify(tokens.id_token, jwks, {
        issuer: as.issuer,
        audience: this.#config.client_id,
      });
      const role = roleFor(claims[this.#config.roles_claim], this.#config.roles);
      if (role === undefined)
        throw new NexusError('role_forbidden', 'no console role for this person');
      // MUST: an email is the person's only when the provider says it verified it: many
      // providers let a person set it (the "nOAuth" class), and rules' `approvers` match it.
      const email =
        typeof claims['email'] === 'string' && claims['email_verified'] === true
          ? claims['email'].slice(0, 256)
          : undefined;
      const name =
        email ||
        (typeof claims['preferred_username'] === 'string' && claims['preferred_username']) ||
        claims.sub;
      return {
        issuer: as.issuer,
        sub: claims.sub,
        name: name.slice(0, 256),
        role,
        ...(email === undefined ? {} : { email }),
      };
    } catch (err) {
      if (err instanceof NexusError) throw err;
      throw new NexusError('unauthorized', 'the OIDC login failed', { cause: err });
    }
  }
}
