/**
 * `oauth2_authorization_code`: per-principal OAuth connections (RFC 6749 §4.1 with PKCE,
 * RFC 7636 S256). An operator (or the user, given the link) connects an account through the
 * admin listener; the refresh token and the current access token live in the vault as one
 * credential per (service, principal); requests are sent with that principal's access token,
 * refreshed (with rotation) shortly before it expires.
 *
 * The principal of a request is the lease's `act` principal, else the agent name: an agent
 * acting for alice uses alice's connection and MUST NOT ever use bob's. The vault name is
 * derived from a hash of the principal, and the stored principal is compared on every load.
 *
 * Failures that need the account to be connected again (no connection, refresh token
 * rejected or missing) surface as `connection_expired` (401), never as the upstream's 401.
 */
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import type {
  Mechanic,
  MechanicContext,
  MechanicDefinition,
  MechanicVault,
  OAuthCoordination,
  ResolvedCredential,
} from './mechanic.js';
import {
  expiryOf,
  requestToken,
  scopeString,
  tokenDispatcher,
  TokenEndpointError,
  type TokenResponse,
} from './oauth2-token.js';
import { durationOption, TokenCache, tokenEndpointUrl, type CachedToken } from './token-cache.js';
import { credentialName } from './schema.js';

/** Authorization request parameters Nexus sets itself; `authorize_params` cannot override them. */
const RESERVED_AUTHORIZE_PARAMS = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
  'scope',
  'resource',
  'audience',
]);

/** Options of `auth: { type: oauth2_authorization_code, ... }`. */
export const oauth2AuthorizationCodeOptionsSchema = z.strictObject({
  /** Vault credential of the OAuth client: `client_id`, and `client_secret` unless `auth_method: none`. */
  credential: credentialName,
  authorize_url: tokenEndpointUrl,
  token_url: tokenEndpointUrl,
  auth_method: z
    .enum(['client_secret_basic', 'client_secret_post', 'none'])
    .default('client_secret_basic'),
  scope: scopeString.optional(),
  audience: z.string().min(1).max(2048).optional(),
  resource: z
    .union([z.url(), z.array(z.url()).min(1).max(16)])
    .optional()
    .transform((r) => (r === undefined ? undefined : typeof r === 'string' ? [r] : r)),
  /** Extra authorization request parameters (`prompt: consent`, `access_type: offline`). */
  authorize_params: z
    .record(
      z
        .string()
        .regex(/^[A-Za-z0-9._~-]{1,64}$/)
        .refine((k) => !RESERVED_AUTHORIZE_PARAMS.has(k), 'this parameter is set by Nexus'),
      z.string().max(1024),
    )
    .default({}),
  /** Where the provider sends the browser back; default `<admin URL>/v1/connections/callback`. */
  redirect_uri: z.url().optional(),
  /** A token is refreshed this long before it expires. */
  refresh_before: durationOption(0, 24 * 3600_000).prefault('30s'),
  /** How long an authorize link (its `state`) stays usable. */
  connect_ttl: durationOption(30_000, 24 * 3600_000).prefault('10m'),
  /** Bound on each token request. */
  timeout: durationOption(1000, 120_000).prefault('10s'),
});

/** Options of the `oauth2_authorization_code` mechanic (defaults applied). */
export type OAuth2AuthorizationCodeOptions = z.infer<typeof oauth2AuthorizationCodeOptionsSchema>;

/** Path of the shared OAuth callback on the admin listener. */
export const CONNECTION_CALLBACK_PATH = '/v1/connections/callback';

/** A principal: printable, 1..256 characters (the `act` claim's bound at enrollment). */
export const principalSchema = z
  .string()
  .min(1)
  .max(256)
  // eslint-disable-next-line no-control-regex
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

/** One connection as listed: never a token. */
export interface ConnectionInfo {
  readonly service: string;
  readonly principal: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** An authorize link for a principal. */
export interface ConnectStart {
  readonly service: string;
  readonly principal: string;
  readonly authorizeUrl: string;
  readonly expiresAt: number;
}

/** The connection side of an `oauth2_authorization_code` service (admin API). */
export interface OAuthConnections {
  readonly service: string;
  /** The vault credential holding the OAuth client (`auth.credential`). */
  readonly clientCredential: string;
  /** The configured endpoints and RFC 8707 resources (registration checks them). */
  readonly endpoints: {
    readonly authorizeUrl: string;
    readonly tokenUrl: string;
    readonly resources: readonly string[];
  };
  /** The OAuth callback the provider redirects to, once the admin listener is bound. */
  redirectUri(): string | undefined;
  /** Creates a one-time `state` and PKCE verifier and returns the provider's authorize URL. */
  start(principal: string): Promise<ConnectStart>;
  /** True when `stateHash` (SHA-256 hex of a `state`) was issued by this service and is pending. */
  owns(stateHash: string): Promise<boolean>;
  /**
   * Consumes the state (one time, even on failure) and exchanges the code. Unknown or
   * expired state, or a provider error -> `forbidden`; token endpoint failure ->
   * `credential_unavailable`.
   */
  complete(stateHash: string, result: { code?: string; error?: string }): Promise<ConnectionInfo>;
  list(): Promise<ConnectionInfo[]>;
  /** Deletes the principal's connection (`not_found` if none). */
  remove(principal: string): Promise<void>;
}

/** A mechanic instance that also manages connections. */
export interface ConnectionMechanic extends Mechanic {
  readonly connections: OAuthConnections;
}

/** The connection manager of a mechanic, if it has one. */
export function connectionsOf(mechanic: Mechanic): OAuthConnections | undefined {
  const c = (mechanic as Partial<ConnectionMechanic>).connections;
  return c !== undefined && typeof c.start === 'function' ? c : undefined;
}

/** SHA-256 hex (state hashes, principal-derived names). */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * The vault credential holding (service, principal)'s connection. Principals are free text
 * (emails, URIs), so the name carries a hash: `oauth2.<service>.<40 hex>`.
 */
export function connectionCredentialName(service: string, principal: string): string {
  return `oauth2.${service}.${sha256Hex(`${service}\u0000${principal}`).slice(0, 40)}`;
}

const b64url = (bytes: Buffer): string => bytes.toString('base64url');

interface Pending {
  readonly principal: string;
  readonly verifier: string;
  readonly redirectUri: string;
  readonly expiresAt: number;
}

/** Bound on pending authorize links per service (oldest expired ones are swept first). */
const MAX_PENDING = 1000;

/**
 * One process's coordination (no cluster): pending links in memory, and no lock beyond
 * the token cache's own single-flight.
 */
export function localOAuthCoordination(clock: () => number): OAuthCoordination {
  const pending = new Map<string, { service: string; link: string; expiresAt: number }>();
  return {
    exclusive: (_key, fn) => fn(),
    putPending(stateHash, service, link, expiresAt) {
      const now = clock();
      for (const [hash, p] of pending) if (p.expiresAt <= now) pending.delete(hash);
      while (pending.size >= MAX_PENDING) {
        const oldest = pending.keys().next().value as string;
        pending.delete(oldest);
      }
      pending.set(stateHash, { service, link, expiresAt });
      return Promise.resolve();
    },
    pendingService(stateHash) {
      const p = pending.get(stateHash);
      return Promise.resolve(p !== undefined && p.expiresAt > clock() ? p.service : undefined);
    },
    takePending(stateHash) {
      const p = pending.get(stateHash);
      pending.delete(stateHash);
      return Promise.resolve(
        p !== undefined && p.expiresAt > clock() ? { service: p.service, link: p.link } : undefined,
      );
    },
  };
}

/** A pending link as stored (a secret: the PKCE verifier). */
const pendingSchema = z.strictObject({
  principal: z.string(),
  verifier: z.string(),
  redirectUri: z.string(),
  expiresAt: z.number(),
});

function connectionExpired(): NexusError {
  return new NexusError('connection_expired');
}

/** The `oauth2_authorization_code` mechanic. */
export const oauth2AuthorizationCodeMechanic: MechanicDefinition<OAuth2AuthorizationCodeOptions> = {
  type: 'oauth2_authorization_code',
  optionsSchema: oauth2AuthorizationCodeOptionsSchema,
  create(service, options, deps): ConnectionMechanic {
    const { clock } = deps;
    const maybeVault = deps.vault;
    if (maybeVault === undefined) {
      throw new NexusError('internal_error', 'oauth2_authorization_code needs the vault');
    }
    const vault: MechanicVault = maybeVault;
    const redirectUriOf = (): string | undefined => {
      if (options.redirect_uri !== undefined) return options.redirect_uri;
      const base = deps.adminUrl?.();
      return base === undefined
        ? undefined
        : `${base.replace(/\/$/, '')}${CONNECTION_CALLBACK_PATH}`;
    };
    const pool = tokenDispatcher(deps.dispatcher, options.timeout);
    const cache = new TokenCache({
      clock,
      refreshMarginMs: options.refresh_before,
      onFetch: deps.onTokenFetch,
    });
    /** Vault version each cached token belongs to; another writer's version drops it. */
    const versions = new Map<string, number>();
    /** Access tokens the upstream refused: a stored copy of one is refreshed, not reused. */
    const refused = new Map<string, string>();
    /** `name@version` whose refresh token was rejected: no more calls until reconnected. */
    const dead = new Set<string>();
    const used = new WeakMap<MechanicContext, { name: string; accessToken: string }>();
    const shared: OAuthCoordination = deps.oauth ?? localOAuthCoordination(clock);
    const prefix = `oauth2.${service}.`;

    /**
     * The client's auth method: a registration Nexus made (mcp/registration.ts) records it
     * in the credential (`token_endpoint_auth_method`), which wins over `auth_method`.
     */
    function authMethodOf(
      credential: ResolvedCredential,
    ): OAuth2AuthorizationCodeOptions['auth_method'] {
      const recorded = credential.fields['token_endpoint_auth_method'];
      if (recorded === undefined) return options.auth_method;
      if (
        recorded === 'none' ||
        recorded === 'client_secret_basic' ||
        recorded === 'client_secret_post'
      )
        return recorded;
      throw new NexusError('credential_unavailable', undefined, {
        detail: `credential "${credential.name}" names an unknown token_endpoint_auth_method`,
      });
    }

    function client(credential: ResolvedCredential) {
      const clientId = requireField(credential, 'client_id');
      const method = authMethodOf(credential);
      const clientSecret =
        method === 'none' ? undefined : requireField(credential, 'client_secret');
      return { clientId, clientSecret, method };
    }

    function tokenCall(
      credential: ResolvedCredential,
      params: Record<string, string | readonly string[] | undefined>,
    ): Promise<TokenResponse> {
      const { clientId, clientSecret, method } = client(credential);
      return requestToken({
        tokenUrl: options.token_url,
        clientId,
        clientSecret,
        authMethod: method === 'none' ? 'client_secret_post' : method,
        params: { ...params, resource: options.resource },
        timeoutMs: options.timeout,
        dispatcher: pool.dispatcher,
      });
    }

    /** The stored connection of `principal`; `fresh` reads past the vault's short cache. */
    async function readStored(
      name: string,
      principal: string,
      fresh: boolean,
    ): Promise<ResolvedCredential> {
      let stored: ResolvedCredential;
      try {
        stored = await vault.resolve(name, { fresh });
      } catch {
        throw connectionExpired();
      }
      // MUST: a connection is only ever used for the principal it was made for.
      if (stored.fields['principal'] !== principal) throw connectionExpired();
      return stored;
    }

    /** The stored access token when it is still usable (not due, not refused), else undefined. */
    function usable(name: string, stored: ResolvedCredential): CachedToken | undefined {
      const accessToken = stored.fields['access_token'];
      const expiresAt = Number(stored.fields['expires_at']);
      // A token the upstream just refused is refreshed even if it has not expired.
      const wasRefused = accessToken !== undefined && refused.get(name) === accessToken;
      if (
        accessToken !== undefined &&
        !wasRefused &&
        Number.isFinite(expiresAt) &&
        expiresAt - options.refresh_before > clock()
      ) {
        versions.set(name, stored.version);
        return { value: accessToken, expiresAt };
      }
      return undefined;
    }

    /**
     * Loads (and when due, refreshes) the principal's token. Single-flight per name in this
     * process (the token cache) and across the nodes of a cluster (`shared.exclusive`):
     * after taking the lock the stored connection is read again, so a refresh another
     * node made meanwhile is used instead of spending the (rotated) refresh token twice.
     */
    async function load(
      name: string,
      principal: string,
      clientCredential: ResolvedCredential,
    ): Promise<CachedToken> {
      const first = usable(name, await readStored(name, principal, false));
      if (first !== undefined) return first;
      return shared.exclusive(`oauth2:${name}`, async () => {
        const stored = await readStored(name, principal, true);
        const current = usable(name, stored);
        if (current !== undefined) return current;
        return refresh(name, stored, clientCredential);
      });
    }

    /** Spends the stored refresh token (the caller holds the connection's lock). */
    async function refresh(
      name: string,
      stored: ResolvedCredential,
      clientCredential: ResolvedCredential,
    ): Promise<CachedToken> {
      const refreshToken = stored.fields['refresh_token'];
      if (refreshToken === undefined || dead.has(`${name}@${stored.version}`)) {
        throw connectionExpired();
      }
      let res: TokenResponse;
      try {
        res = await tokenCall(clientCredential, {
          grant_type: 'refresh_token',
          refresh_token: refreshToken,
        });
      } catch (err) {
        if (
          err instanceof TokenEndpointError &&
          err.kind === 'rejected' &&
          err.error !== 'invalid_client'
        ) {
          dead.add(`${name}@${stored.version}`);
          throw new NexusError('connection_expired', undefined, { cause: err });
        }
        throw err instanceof TokenEndpointError
          ? err.toNexusError()
          : new NexusError('credential_unavailable', undefined, {
              cause: err,
              detail: `the OAuth connection of service "${service}" could not be refreshed`,
            });
      }
      const expiresAtNew = expiryOf(clock(), res.expiresInMs);
      // Rotation: a new refresh token replaces the old one, which the provider may now refuse.
      const nextRefresh = res.refreshToken ?? refreshToken;
      const written = await vault.set(name, {
        ...stored.fields,
        access_token: res.accessToken,
        expires_at: String(expiresAtNew),
        refresh_token: nextRefresh,
        refreshed_at: String(clock()),
      });
      versions.set(name, written.version);
      refused.delete(name);
      return { value: res.accessToken, expiresAt: expiresAtNew };
    }

    async function token(ctx: MechanicContext) {
      const principal = ctx.act ?? ctx.agent;
      const name = connectionCredentialName(service, principal);
      const clientCredential = await ctx.credential(options.credential);
      const meta = await vault.describe(name);
      if (meta === undefined) {
        cache.invalidate(name);
        throw connectionExpired();
      }
      const known = versions.get(name);
      if (known !== undefined && known !== meta.version) cache.invalidate(name);
      const cached = await cache.get(name, () => load(name, principal, clientCredential));
      return { name, clientCredential, accessToken: cached.value };
    }

    const connections: OAuthConnections = {
      service,
      clientCredential: options.credential,
      endpoints: {
        authorizeUrl: options.authorize_url,
        tokenUrl: options.token_url,
        resources: options.resource ?? [],
      },
      redirectUri: redirectUriOf,
      async start(principal) {
        const p = principalSchema.safeParse(principal);
        if (!p.success) throw new NexusError('validation_failed', 'principal: invalid');
        const redirectUri = redirectUriOf();
        if (redirectUri === undefined) {
          throw new NexusError('internal_error', 'no redirect_uri for OAuth connections');
        }
        const clientCredential = await vault.resolve(options.credential).catch(() => {
          const detail = `credential "${options.credential}" is not set`;
          throw new NexusError('credential_unavailable', detail, { detail });
        });
        const clientId = requireField(clientCredential, 'client_id');
        const now = clock();
        const state = b64url(randomBytes(32));
        const verifier = b64url(randomBytes(32));
        const challenge = b64url(createHash('sha256').update(verifier).digest());
        const expiresAt = now + options.connect_ttl;
        // Only the hash of the state is kept: the link itself is the capability.
        const link: Pending = { principal, verifier, redirectUri, expiresAt };
        await shared.putPending(sha256Hex(state), service, JSON.stringify(link), expiresAt);
        const url = new URL(options.authorize_url);
        for (const [k, v] of Object.entries(options.authorize_params)) url.searchParams.set(k, v);
        return {
          service,
          principal,
          authorizeUrl: buildAuthorizeUrl(url, {
            clientId,
            redirectUri,
            state,
            challenge,
          }),
          expiresAt,
        };
      },
      async owns(stateHash) {
        return (await shared.pendingService(stateHash)) === service;
      },
      async complete(stateHash, result) {
        // One time, whatever happens next, on whichever node the callback reaches.
        const taken = await shared.takePending(stateHash);
        if (taken === undefined || taken.service !== service) throw new NexusError('forbidden');
        let raw: unknown;
        try {
          raw = JSON.parse(taken.link);
        } catch {
          raw = undefined;
        }
        const parsed = pendingSchema.safeParse(raw);
        if (!parsed.success) throw new NexusError('forbidden');
        const p: Pending = parsed.data;
        if (p.expiresAt <= clock()) throw new NexusError('forbidden');
        if (result.error !== undefined || result.code === undefined || result.code === '') {
          throw new NexusError('forbidden', 'the provider did not grant access');
        }
        const clientCredential = await vault.resolve(options.credential).catch(() => {
          const detail = `credential "${options.credential}" is not set`;
          throw new NexusError('credential_unavailable', detail, { detail });
        });
        let res: TokenResponse;
        try {
          res = await tokenCall(clientCredential, {
            grant_type: 'authorization_code',
            code: result.code,
            redirect_uri: p.redirectUri,
            code_verifier: p.verifier,
          });
        } catch (err) {
          throw err instanceof TokenEndpointError
            ? err.toNexusError()
            : new NexusError('credential_unavailable', undefined, { cause: err });
        }
        const now = clock();
        const name = connectionCredentialName(service, p.principal);
        const fields: Record<string, string> = {
          principal: p.principal,
          service,
          access_token: res.accessToken,
          expires_at: String(expiryOf(now, res.expiresInMs)),
          connected_at: String(now),
        };
        if (res.refreshToken !== undefined) fields['refresh_token'] = res.refreshToken;
        if (res.scope !== undefined && res.scope !== '') fields['scope'] = res.scope;
        await vault.set(name, fields);
        cache.invalidate(name);
        refused.delete(name);
        return { service, principal: p.principal, createdAt: now, updatedAt: now };
      },
      async list() {
        const out: ConnectionInfo[] = [];
        for (const meta of await vault.list()) {
          if (!meta.name.startsWith(prefix)) continue;
          const c = await vault.resolve(meta.name).catch(() => undefined);
          const principal = c?.fields['principal'];
          if (c === undefined || principal === undefined || c.fields['service'] !== service)
            continue;
          if (connectionCredentialName(service, principal) !== meta.name) continue;
          const connected = Number(c.fields['connected_at']);
          out.push({
            service,
            principal,
            createdAt: Number.isFinite(connected) ? connected : meta.createdAt,
            updatedAt: Number(c.fields['refreshed_at'] ?? connected),
          });
        }
        return out.sort((a, b) => a.principal.localeCompare(b.principal));
      },
      async remove(principal) {
        const name = connectionCredentialName(service, principal);
        if ((await vault.describe(name)) === undefined) throw new NexusError('not_found');
        await vault.delete(name);
        cache.invalidate(name);
        versions.delete(name);
        refused.delete(name);
      },
    };

    /** Builds the authorize URL (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2). */
    function buildAuthorizeUrl(
      url: URL,
      p: { clientId: string; redirectUri: string; state: string; challenge: string },
    ): string {
      url.searchParams.set('response_type', 'code');
      url.searchParams.set('client_id', p.clientId);
      url.searchParams.set('redirect_uri', p.redirectUri);
      if (options.scope !== undefined) url.searchParams.set('scope', options.scope);
      if (options.audience !== undefined) url.searchParams.set('audience', options.audience);
      for (const r of options.resource ?? []) url.searchParams.append('resource', r);
      url.searchParams.set('state', p.state);
      url.searchParams.set('code_challenge', p.challenge);
      url.searchParams.set('code_challenge_method', 'S256');
      return url.toString();
    }

    return {
      type: 'oauth2_authorization_code',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      connections,
      async apply(request, ctx) {
        const t = await token(ctx);
        const value = assertHeaderSafe(t.clientCredential, `Bearer ${t.accessToken}`);
        request.headers['authorization'] = value;
        used.set(ctx, { name: t.name, accessToken: t.accessToken });
        // The client secret and refresh token go to the token endpoint only.
        return applied(t.clientCredential, new SecretSet().add(t.accessToken));
      },
      onUnauthorized(ctx) {
        const last = used.get(ctx);
        if (last !== undefined) {
          cache.invalidate(last.name, last.accessToken);
          refused.set(last.name, last.accessToken);
        }
        return Promise.resolve(true);
      },
      async close() {
        cache.clear();
        await pool.close();
      },
    };
  },
};
