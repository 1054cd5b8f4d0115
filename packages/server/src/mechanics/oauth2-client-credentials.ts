/**
 * `oauth2_client_credentials`: fetches an access token with the client credentials grant
 * (RFC 6749 §4.4) from the vault's client id and secret, caches it per credential version
 * until shortly before expiry (one token request in flight at a time) and injects
 * `Authorization: Bearer <token>`. On an upstream 401 the cached token is dropped and the
 * pipeline retries once with a fresh one.
 *
 * MUST: the access token and the client secret are reported as secrets, so the scrubber
 * removes them (and their encodings) from every response.
 */
import { z } from 'zod';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import type { Mechanic, MechanicContext, MechanicDefinition } from './mechanic.js';
import {
  clientAuthMethod,
  expiryOf,
  requestToken,
  scopeString,
  tokenDispatcher,
  tokenUnavailable,
} from './oauth2-token.js';
import { durationOption, TokenCache, tokenEndpointUrl } from './token-cache.js';
import { credentialName } from './schema.js';

/** Options of `auth: { type: oauth2_client_credentials, ... }`. */
export const oauth2ClientCredentialsOptionsSchema = z.strictObject({
  /** Vault credential with fields `client_id` and `client_secret`. */
  credential: credentialName,
  token_url: tokenEndpointUrl,
  auth_method: clientAuthMethod.default('client_secret_basic'),
  scope: scopeString.optional(),
  /** Sent as `audience` (Auth0, Okta style). */
  audience: z.string().min(1).max(2048).optional(),
  /** RFC 8707 resource indicator(s): absolute URIs without a fragment. */
  resource: z
    .union([z.url(), z.array(z.url()).min(1).max(16)])
    .optional()
    .transform((r) => (r === undefined ? undefined : typeof r === 'string' ? [r] : r)),
  /** A token is replaced this long before it expires. */
  refresh_before: durationOption(0, 24 * 3600_000).prefault('30s'),
  /** Bound on each token request (connect, headers and body). */
  timeout: durationOption(1000, 120_000).prefault('10s'),
});

/** Options of the `oauth2_client_credentials` mechanic (defaults applied). */
export type OAuth2ClientCredentialsOptions = z.infer<typeof oauth2ClientCredentialsOptionsSchema>;

/** The `oauth2_client_credentials` mechanic. */
export const oauth2ClientCredentialsMechanic: MechanicDefinition<OAuth2ClientCredentialsOptions> = {
  type: 'oauth2_client_credentials',
  optionsSchema: oauth2ClientCredentialsOptionsSchema,
  create(service, options, deps): Mechanic {
    const cache = new TokenCache({
      clock: deps.clock,
      refreshMarginMs: options.refresh_before,
      onFetch: deps.onTokenFetch,
    });
    const pool = tokenDispatcher(deps.dispatcher, options.timeout);
    // Key of the token for a credential version; older versions are dropped on sight.
    const keyOf = (name: string, version: number) => `${service}\u0000${name}\u0000${version}`;
    const lastVersion = new Map<string, number>();
    // The token each request used, so a 401 drops that token and not a newer one.
    const used = new WeakMap<MechanicContext, { key: string; accessToken: string }>();

    async function token(ctx: MechanicContext) {
      const credential = await ctx.credential(options.credential);
      const clientId = requireField(credential, 'client_id');
      const clientSecret = requireField(credential, 'client_secret');
      if (lastVersion.get(credential.name) !== credential.version) {
        // Rotated client secret: tokens of the old version are not reused.
        const previous = lastVersion.get(credential.name);
        if (previous !== undefined) cache.invalidate(keyOf(credential.name, previous));
        lastVersion.set(credential.name, credential.version);
      }
      const key = keyOf(credential.name, credential.version);
      const cached = await cache.get(key, async () => {
        try {
          const res = await requestToken({
            tokenUrl: options.token_url,
            clientId,
            clientSecret,
            authMethod: options.auth_method,
            params: {
              grant_type: 'client_credentials',
              scope: options.scope,
              audience: options.audience,
              resource: options.resource,
            },
            timeoutMs: options.timeout,
            dispatcher: pool.dispatcher,
          });
          return { value: res.accessToken, expiresAt: expiryOf(deps.clock(), res.expiresInMs) };
        } catch (err) {
          throw tokenUnavailable(err);
        }
      });
      return { credential, clientId, clientSecret, key, accessToken: cached.value };
    }

    return {
      type: 'oauth2_client_credentials',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const t = await token(ctx);
        const value = assertHeaderSafe(t.credential, `Bearer ${t.accessToken}`);
        request.headers['authorization'] = value;
        used.set(ctx, { key: t.key, accessToken: t.accessToken });
        // The client secret goes to the token endpoint only: not a secret of this request.
        return applied(t.credential, new SecretSet().add(t.accessToken));
      },
      onUnauthorized(ctx) {
        const last = used.get(ctx);
        if (last !== undefined) cache.invalidate(last.key, last.accessToken);
        return Promise.resolve(true);
      },
      async close() {
        cache.clear();
        await pool.close();
      },
    };
  },
};
