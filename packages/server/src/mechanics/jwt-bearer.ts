/**
 * `jwt_bearer`: the RFC 7523 JWT bearer grant, as Google service accounts use it.
 *
 * Nexus signs a short assertion with the service account's private key (from the vault),
 * exchanges it at the token endpoint for an access token, caches that token until shortly
 * before it expires (one fetch in flight per credential version) and injects
 * `Authorization: Bearer <access token>`. On a 401 from the upstream the cached token is
 * dropped and the request retried once with a fresh one.
 *
 * MUST: neither the private key, the assertion nor the access token reaches the agent; the
 * access token and the header value are returned as secrets for the scrubber.
 */
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { z } from 'zod';
import { applied, assertHeaderSafe, optionalField, requireField, SecretSet } from './credential.js';
import { credentialUnavailable } from './errors.js';
import type { Mechanic, MechanicDefinition, ResolvedCredential } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';
import {
  durationOption,
  expiresInToMs,
  postTokenRequest,
  tokenEndpointUrl,
  tokenField,
  TokenCache,
} from './token-cache.js';

/** The grant type of RFC 7523 §2.1. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** JWS algorithms an assertion may be signed with. */
export const ASSERTION_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
type AssertionAlg = (typeof ASSERTION_ALGORITHMS)[number];

/** Options of `auth: { type: jwt_bearer, ... }`. */
export const jwtBearerOptionsSchema = z.strictObject({
  /** Fields `private_key` (PEM), `client_email` (or `issuer`), optional `key_id`. */
  credential: credentialName,
  /** Where the assertion is exchanged, e.g. `https://oauth2.googleapis.com/token`. */
  token_url: tokenEndpointUrl,
  /** Space-separated scopes, sent as the assertion's `scope` claim (Google style). */
  scope: z.string().min(1).max(4096).optional(),
  /** The assertion's `aud`; defaults to `token_url`. */
  audience: z.string().min(1).max(2048).optional(),
  /** The assertion's `sub` (a user to impersonate, domain-wide delegation); default the issuer. */
  subject: z.string().min(1).max(1024).optional(),
  /** Lifetime of each assertion (Google accepts at most 1h). */
  lifetime: durationOption(30_000, 3600_000).prefault('1h'),
  /** Signing algorithm; default from the key type (RSA -> RS256, P-256 -> ES256, Ed25519 -> EdDSA). */
  algorithm: z.enum(ASSERTION_ALGORITHMS).optional(),
  /** Credential field names. */
  private_key_field: fieldName.default('private_key'),
  key_id_field: fieldName.default('key_id'),
});

/** Options of the `jwt_bearer` mechanic. */
export type JwtBearerOptions = z.infer<typeof jwtBearerOptionsSchema>;

/**
 * Parses a PEM private key from a credential field (PKCS#8 or PKCS#1) and picks the JWS
 * algorithm for it. A bad key is `credential_unavailable`; the message names the field only.
 */
export function privateKeyFrom(
  credential: ResolvedCredential,
  field: string,
  algorithm?: AssertionAlg,
): { key: KeyObject; alg: AssertionAlg } {
  const pem = requireField(credential, field);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw credentialUnavailable(
      `credential "${credential.name}" field "${field}" is not a PEM private key`,
    );
  }
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const natural: AssertionAlg | undefined =
    type === 'rsa'
      ? 'RS256'
      : type === 'ec' && curve === 'prime256v1'
        ? 'ES256'
        : type === 'ed25519'
          ? 'EdDSA'
          : undefined;
  const alg = algorithm ?? natural;
  const fits =
    alg !== undefined &&
    (alg === 'RS256' || alg === 'PS256' ? type === 'rsa' || type === 'rsa-pss' : alg === natural);
  if (!fits) {
    throw credentialUnavailable(
      `credential "${credential.name}" field "${field}" does not fit the signing algorithm`,
    );
  }
  return { key, alg };
}

/** The `jwt_bearer` mechanic. */
export const jwtBearerMechanic: MechanicDefinition<JwtBearerOptions> = {
  type: 'jwt_bearer',
  optionsSchema: jwtBearerOptionsSchema,
  create(service, options, deps): Mechanic {
    const cache = new TokenCache({ clock: deps.clock, onFetch: deps.onTokenFetch });
    const what = `service "${service}" jwt_bearer`;
    const keyOf = (c: ResolvedCredential) => `${c.name}\u0000${c.version}`;

    async function fetchToken(credential: ResolvedCredential) {
      const { key, alg } = privateKeyFrom(credential, options.private_key_field, options.algorithm);
      const issuer =
        optionalField(credential, 'client_email') || requireField(credential, 'issuer');
      const kid = optionalField(credential, options.key_id_field);
      const now = deps.clock();
      const iat = Math.floor(now / 1000);
      const jwt = new SignJWT(options.scope === undefined ? {} : { scope: options.scope })
        .setProtectedHeader(kid ? { alg, typ: 'JWT', kid } : { alg, typ: 'JWT' })
        .setIssuer(issuer)
        .setSubject(options.subject ?? issuer)
        .setAudience(options.audience ?? options.token_url)
        .setIssuedAt(iat)
        .setExpirationTime(iat + Math.floor(options.lifetime / 1000))
        .setJti(randomUUID());
      const assertion = await jwt.sign(key);
      const response = await postTokenRequest(what, {
        url: options.token_url,
        form: { grant_type: JWT_BEARER_GRANT, assertion },
        dispatcher: deps.dispatcher,
      });
      const tokenType = response['token_type'];
      if (typeof tokenType === 'string' && tokenType.toLowerCase() !== 'bearer') {
        throw credentialUnavailable(`${what}: token endpoint issued a non-bearer token`);
      }
      return {
        value: tokenField(what, response, 'access_token'),
        expiresAt: expiresInToMs(response, deps.clock(), 3600_000),
      };
    }

    return {
      type: 'jwt_bearer',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const token = await cache.get(keyOf(credential), () => fetchToken(credential));
        const value = assertHeaderSafe(credential, `Bearer ${token.value}`);
        request.headers['authorization'] = value;
        // Every field read is a secret (the key, and the account it names), as is the token.
        return applied(
          credential,
          // The key and the assertion's claims go to the token endpoint only.
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
