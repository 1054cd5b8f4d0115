/**
 * `token_exchange`: RFC 8693 OAuth 2.0 Token Exchange of the agent's own identity.
 *
 * The subject token is the agent's verified lease (a WIMSE workload identity token, type
 * `urn:ietf:params:oauth:token-type:jwt`), so the security token service sees exactly who
 * the agent is, its roles, its task and, in `act`, on whose behalf it acts; it can verify
 * all of it against the Nexus JWKS. With `actor: true` and a lease that carries `act`, the
 * lease is also sent as the `actor_token`: a delegation request, asking the STS for a token
 * whose subject is the principal and whose actor is the agent. Nexus authenticates to the
 * STS with a client id and secret from the vault (optional).
 *
 * The downstream token is cached per lease (its `jti`) until it or the lease expires, and
 * injected as `Authorization: Bearer`. A 401 from the upstream drops it and retries once.
 *
 * MUST: the downstream token and the STS client secret never reach the agent.
 */
import { z } from 'zod';
import { credentialUnavailable } from './errors.js';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import type { AppliedAuth, Mechanic, MechanicContext, MechanicDefinition } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';
import {
  expiresInToMs,
  postTokenRequest,
  tokenEndpointUrl,
  tokenField,
  TokenCache,
} from './token-cache.js';

/** The grant type of RFC 8693 §2.1. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** The token type of the subject (and actor) token: the lease is a JWT. */
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
/** The default requested token type. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const tokenTypeUri = z.string().regex(/^urn:[A-Za-z0-9:._-]{1,200}$/, 'must be a token type URN');

/** Options of `auth: { type: token_exchange, ... }`. */
export const tokenExchangeOptionsSchema = z.strictObject({
  /** The STS token endpoint. */
  token_url: tokenEndpointUrl,
  /** Nexus's client at the STS: fields `client_id`, `client_secret`. Optional. */
  credential: credentialName.optional(),
  /** How the client authenticates (RFC 6749 §2.3.1). */
  client_auth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  /** `audience` parameter: the logical name of the target service. */
  audience: z.string().min(1).max(2048).optional(),
  /** `resource` parameter: the target service's URI. */
  resource: z.string().url().optional(),
  /** Space-separated scopes requested. */
  scope: z.string().min(1).max(4096).optional(),
  requested_token_type: tokenTypeUri.default(ACCESS_TOKEN_TYPE),
  /** Send the lease as `actor_token` too when it carries `act` (delegation). */
  actor: z.boolean().default(false),
  client_id_field: fieldName.default('client_id'),
  client_secret_field: fieldName.default('client_secret'),
});

/** Options of the `token_exchange` mechanic. */
export type TokenExchangeOptions = z.infer<typeof tokenExchangeOptionsSchema>;

function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

/** The `token_exchange` mechanic. */
export const tokenExchangeMechanic: MechanicDefinition<TokenExchangeOptions> = {
  type: 'token_exchange',
  optionsSchema: tokenExchangeOptionsSchema,
  create(service, options, deps): Mechanic {
    const cache = new TokenCache({
      clock: deps.clock,
      refreshMarginMs: 30_000,
      onFetch: deps.onTokenFetch,
    });
    const what = `service "${service}" token_exchange`;

    async function client(ctx: MechanicContext) {
      if (options.credential === undefined) return undefined;
      const credential = await ctx.credential(options.credential);
      return {
        credential,
        id: requireField(credential, options.client_id_field),
        secret: requireField(credential, options.client_secret_field),
      };
    }

    function keyOf(ctx: MechanicContext, version: number | undefined): string {
      const jti = ctx.claims?.jti;
      if (ctx.lease === undefined || jti === undefined) {
        throw credentialUnavailable(`${what}: no verified lease to exchange`);
      }
      return `${jti}\u0000${version ?? 0}`;
    }

    return {
      type: 'token_exchange',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx): Promise<AppliedAuth> {
        const c = await client(ctx);
        const key = keyOf(ctx, c?.credential.version);
        const lease = ctx.lease as string;
        const leaseExp = (ctx.claims?.exp ?? 0) * 1000;
        const delegated = options.actor && ctx.claims?.act !== undefined;
        const token = await cache.get(key, async () => {
          const form: Record<string, string | undefined> = {
            grant_type: TOKEN_EXCHANGE_GRANT,
            subject_token: lease,
            subject_token_type: JWT_TOKEN_TYPE,
            requested_token_type: options.requested_token_type,
            audience: options.audience,
            resource: options.resource,
            scope: options.scope,
            actor_token: delegated ? lease : undefined,
            actor_token_type: delegated ? JWT_TOKEN_TYPE : undefined,
          };
          const headers: Record<string, string> = {};
          if (c !== undefined && options.client_auth === 'client_secret_basic') {
            const basic = Buffer.from(`${formEncode(c.id)}:${formEncode(c.secret)}`).toString(
              'base64',
            );
            headers['authorization'] = `Basic ${basic}`;
          } else if (c !== undefined) {
            form['client_id'] = c.id;
            form['client_secret'] = c.secret;
          }
          const response = await postTokenRequest(what, {
            url: options.token_url,
            form,
            headers,
            dispatcher: deps.dispatcher,
          });
          const now = deps.clock();
          // MUST NOT outlive the lease it was issued for.
          const expiresAt = Math.min(expiresInToMs(response, now, 300_000), leaseExp);
          return { value: tokenField(what, response, 'access_token'), expiresAt };
        });
        // The client id and secret authenticate to the token service only.
        const secrets = new SecretSet().add(token.value);
        const value = `Bearer ${token.value}`;
        if (/[\r\n\0]/.test(value)) {
          throw credentialUnavailable(`${what}: unusable downstream token`);
        }
        request.headers['authorization'] =
          c === undefined ? value : assertHeaderSafe(c.credential, value);
        return c === undefined ? { secrets: secrets.toArray() } : applied(c.credential, secrets);
      },
      async onUnauthorized(ctx) {
        const c = await client(ctx);
        cache.invalidate(keyOf(ctx, c?.credential.version));
        return true;
      },
      close() {
        cache.clear();
        return Promise.resolve();
      },
    };
  },
};
