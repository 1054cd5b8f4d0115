/**
 * `github_app`: authenticate as a GitHub App installation.
 *
 * Nexus signs an app JWT (RS256, `iss` = the app id, `iat` = now - 60 s for clock drift,
 * `exp` = now + 9 min, under GitHub's 10 min limit) with the app's private key from the
 * vault, exchanges it at `POST {api_base}/app/installations/{id}/access_tokens` for an
 * installation token, caches that token until shortly before its `expires_at` (one fetch in
 * flight per credential version) and injects `Authorization: token <installation token>`
 * (or `Bearer`). A 401 from the upstream drops the cached token and retries once.
 *
 * MUST: neither the private key, the app JWT nor the installation token reaches the agent.
 */
import { SignJWT } from 'jose';
import { z } from 'zod';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import { credentialUnavailable } from './errors.js';
import { privateKeyFrom } from './jwt-bearer.js';
import type { Mechanic, MechanicDefinition, ResolvedCredential } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';
import { postTokenRequest, tokenEndpointUrl, tokenField, TokenCache } from './token-cache.js';

/** Options of `auth: { type: github_app, ... }`. */
export const githubAppOptionsSchema = z.strictObject({
  /** Fields `app_id` (or the app's client id) and `private_key` (PEM). */
  credential: credentialName,
  /** The installation whose token is used (numeric id; a YAML number is accepted). */
  installation_id: z
    .union([z.string(), z.int().positive()])
    .transform((v) => String(v))
    .pipe(z.string().regex(/^[1-9][0-9]{0,19}$/, 'must be a numeric installation id')),
  /** GitHub API base (GitHub Enterprise Server: `https://HOST/api/v3`). */
  api_base: tokenEndpointUrl.default('https://api.github.com'),
  /** `token` (GitHub's classic scheme) or `bearer`. */
  scheme: z.enum(['token', 'bearer']).default('token'),
  /** Narrow the installation token to some repositories (names, without owner). */
  repositories: z.array(z.string().regex(/^[A-Za-z0-9._-]{1,100}$/)).optional(),
  /** Narrow the installation token's permissions, e.g. `{ issues: read }`. */
  permissions: z
    .record(z.string().regex(/^[a-z_]{1,64}$/), z.enum(['read', 'write', 'admin']))
    .optional(),
  app_id_field: fieldName.default('app_id'),
  private_key_field: fieldName.default('private_key'),
});

/** Options of the `github_app` mechanic. */
export type GithubAppOptions = z.infer<typeof githubAppOptionsSchema>;

/** App JWTs live 9 minutes: GitHub refuses `exp` more than 10 minutes after `iat`. */
const APP_JWT_SECONDS = 9 * 60;

/** The `github_app` mechanic. */
export const githubAppMechanic: MechanicDefinition<GithubAppOptions> = {
  type: 'github_app',
  optionsSchema: githubAppOptionsSchema,
  create(service, options, deps): Mechanic {
    const cache = new TokenCache({
      clock: deps.clock,
      refreshMarginMs: 5 * 60_000,
      onFetch: deps.onTokenFetch,
    });
    const what = `service "${service}" github_app`;
    const keyOf = (c: ResolvedCredential) => `${c.name}\u0000${c.version}`;
    const url = `${options.api_base.replace(/\/+$/, '')}/app/installations/${options.installation_id}/access_tokens`;

    async function fetchToken(credential: ResolvedCredential) {
      const { key } = privateKeyFrom(credential, options.private_key_field, 'RS256');
      const appId = requireField(credential, options.app_id_field);
      const now = Math.floor(deps.clock() / 1000);
      const appJwt = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
        .setIssuer(appId)
        .setIssuedAt(now - 60)
        .setExpirationTime(now + APP_JWT_SECONDS)
        .sign(key);
      const body: Record<string, unknown> = {};
      if (options.repositories !== undefined) body['repositories'] = options.repositories;
      if (options.permissions !== undefined) body['permissions'] = options.permissions;
      const response = await postTokenRequest(what, {
        url,
        json: body,
        headers: {
          accept: 'application/vnd.github+json',
          authorization: `Bearer ${appJwt}`,
          'user-agent': 'nexus-proxy',
          'x-github-api-version': '2022-11-28',
        },
        dispatcher: deps.dispatcher,
      });
      const token = tokenField(what, response, 'token');
      const expiresAt = Date.parse(tokenField(what, response, 'expires_at'));
      if (!Number.isFinite(expiresAt)) {
        throw credentialUnavailable(`${what}: token response has no usable expires_at`);
      }
      // Installation tokens live one hour; never trust a longer claim.
      return { value: token, expiresAt: Math.min(expiresAt, deps.clock() + 3600_000) };
    }

    return {
      type: 'github_app',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const token = await cache.get(keyOf(credential), () => fetchToken(credential));
        const value = assertHeaderSafe(
          credential,
          `${options.scheme === 'token' ? 'token' : 'Bearer'} ${token.value}`,
        );
        request.headers['authorization'] = value;
        return applied(
          credential,
          // The private key never travels; the app JWT goes to the token endpoint only.
          new SecretSet().add(token.value),
        );
      },
      async onUnauthorized(ctx) {
        const credential = await ctx.credential(options.credential);
        cache.invalidate(keyOf(credential));
        return true;
      },
      close() {
        cache.clear();
        return Promise.resolve();
      },
    };
  },
};
