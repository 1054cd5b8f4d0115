// The `admin.console` section of nexus.yaml: OIDC login to the web console for people,
// with a claim mapped to the roles viewer, operator and admin (docs/console.md). Kept out
// of schema.ts so that file only wires it in.
import { z } from 'zod';
import { isLoopbackHost } from './schema.js';

/** What a console user may do: read (viewer), act on agents, leases and approvals (operator), everything (admin). */
export type ConsoleRole = 'viewer' | 'operator' | 'admin';

/** The roles from least to most allowed. */
export const CONSOLE_ROLES: readonly ConsoleRole[] = ['viewer', 'operator', 'admin'];

/** `admin.console.oidc` as parsed. */
export interface ConsoleOidcConfig {
  /** The OpenID Provider's issuer URL (discovery at `/.well-known/openid-configuration`). */
  readonly issuer: string;
  readonly client_id: string;
  /** Name of the vault credential whose field `client_secret` is the client secret. */
  readonly client_secret_credential: string;
  /** `http(s)://<admin listener>/console/oidc/callback`, as registered at the provider. */
  readonly redirect_uri: string;
  /** Scopes asked for (always including `openid`). */
  readonly scopes: readonly string[];
  /** The ID token claim holding the person's groups (a string or an array of strings). */
  readonly roles_claim: string;
  /** Claim values granting each role; a person gets the highest role any value grants. */
  readonly roles: Readonly<Record<ConsoleRole, readonly string[]>>;
}

/** `admin.console` as parsed. */
export interface ConsoleConfig {
  /** OIDC login for people; undefined: operator-token login only. */
  readonly oidc: ConsoleOidcConfig | undefined;
}

/** The callback path the console answers on. */
export const OIDC_CALLBACK_PATH = '/console/oidc/callback';

function httpUrl(what: string) {
  return z.string().transform((s, ctx) => {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: `${what} must be a URL` });
      return z.NEVER;
    }
    // MUST: https, or plain http to a loopback host only (as for upstreams).
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      ctx.addIssue({
        code: 'custom',
        message: `${what} must be https (plain http only to a loopback host)`,
      });
      return z.NEVER;
    }
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      ctx.addIssue({
        code: 'custom',
        message: `${what} must not carry credentials, a query or a fragment`,
      });
      return z.NEVER;
    }
    return url.href.replace(/\/$/, '');
  });
}

const claimValues = z.array(z.string().min(1).max(256)).max(256).default([]);

/** The `admin.console` schema. */
export const consoleSchema = z
  .strictObject({
    oidc: z
      .strictObject({
        issuer: httpUrl('issuer'),
        client_id: z.string().min(1).max(256),
        client_secret_credential: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
        redirect_uri: httpUrl('redirect_uri').refine(
          (u) => new URL(u).pathname === OIDC_CALLBACK_PATH,
          { message: `redirect_uri must end in ${OIDC_CALLBACK_PATH}` },
        ),
        scopes: z
          .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/))
          .max(32)
          .default(['openid', 'email', 'profile'])
          .transform((s) => (s.includes('openid') ? s : ['openid', ...s])),
        roles_claim: z.string().min(1).max(128).default('groups'),
        roles: z
          .strictObject({ viewer: claimValues, operator: claimValues, admin: claimValues })
          .refine((r) => r.viewer.length + r.operator.length + r.admin.length > 0, {
            message: 'map at least one claim value to a role',
          }),
      })
      .optional(),
  })
  .prefault({})
  .transform((c): ConsoleConfig => ({ oidc: c.oidc }));
