/**
 * A real OAuth 2.0 authorization server (`oidc-provider` on loopback) and a resource server
 * that validates its access tokens the way a real API does (JWT access tokens, RFC 9068,
 * verified against the provider's JWKS: signature, `typ`, issuer, audience, expiry).
 *
 * The provider supports the client credentials grant, the authorization code grant with
 * PKCE, refresh tokens with rotation and resource indicators (RFC 8707). Login and consent
 * are scripted: `browse()` follows the authorize URL like a browser (cookies, redirects)
 * and completes the interaction pages for a given account.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify, type JWTPayload } from 'jose';
import Provider, { errors } from 'oidc-provider';

export const CC_CLIENT = { client_id: 'nexus-cc', client_secret: 'cc-secret-0123456789abcdefghij' };
export const CC_POST_CLIENT = {
  client_id: 'nexus-cc-post',
  client_secret: 'cc-post-secret-0123456789abcdef',
};
export const WEB_CLIENT = {
  client_id: 'nexus-web',
  client_secret: 'web-secret-0123456789abcdefgh',
};

/** Token endpoint calls by grant type (successful and failed). */
export interface GrantCounts {
  client_credentials: number;
  authorization_code: number;
  refresh_token: number;
  errors: number;
  /** Every POST to the token endpoint, whatever its outcome. */
  requests: number;
}

/** Extras for the MCP authorization tests (issue 12); all off by default. */
export interface OidcOptions {
  /** More resource indicators the provider issues tokens for (audience = the indicator). */
  readonly otherResources?: readonly string[];
  /** Open dynamic client registration (RFC 7591) at `/reg`. */
  readonly registration?: boolean;
  /** Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document-02). */
  readonly clientIdMetadataDocuments?: boolean;
  /** The provider's outbound fetch (CIMD documents); default: oidc-provider's own. */
  readonly fetch?: typeof fetch;
  /** The scripted browser's fetch (e.g. one that trusts a test CA). */
  readonly browserFetch?: typeof fetch;
}

/** A `resource` parameter the provider received, by endpoint. */
export interface SeenResource {
  readonly endpoint: 'authorization' | 'token';
  readonly grantType?: string;
  readonly clientId?: string;
  readonly resource: unknown;
}

export interface TestOidc {
  readonly issuer: string;
  /** `resource` parameters of successful authorization and token requests, in order. */
  readonly resources: SeenResource[];
  readonly authorizeUrl: string;
  readonly tokenUrl: string;
  readonly counts: GrantCounts;
  /** Creates the provider: the Nexus callback URL is only known once Nexus runs. */
  setup(redirectUri: string): Promise<void>;
  /** Access token lifetime (seconds) for tokens issued from now on. */
  setAccessTokenTtl(seconds: number): void;
  /** Revokes every grant of an account: its refresh tokens stop working. */
  revokeAccount(accountId: string): Promise<void>;
  /** Completes an authorize URL in a scripted browser as `login`; returns the final response. */
  browse(
    authorizeUrl: string,
    login: string,
  ): Promise<{ status: number; url: string; body: string }>;
  close(): Promise<void>;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Starts the authorization server's listener; call `setup` once Nexus's URL is known. */
export async function startOidc(resource: string, opts: OidcOptions = {}): Promise<TestOidc> {
  const resources: SeenResource[] = [];
  let provider: Provider | undefined;
  let accessTokenTtl = 3600;
  const counts: GrantCounts = {
    client_credentials: 0,
    authorization_code: 0,
    refresh_token: 0,
    errors: 0,
    requests: 0,
  };
  const grants = new Map<string, string[]>();

  async function interaction(req: IncomingMessage, res: ServerResponse, step: string | undefined) {
    const p = provider as Provider;
    const details = await p.interactionDetails(req, res);
    if (req.method === 'GET' && step === undefined) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ uid: details.uid, prompt: details.prompt.name }));
      return;
    }
    if (step === '/login') {
      const form = await readForm(req);
      await p.interactionFinished(
        req,
        res,
        { login: { accountId: form.get('login') ?? '' } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    // Consent: grant exactly what was asked.
    const accountId = details.session?.accountId as string;
    const grant =
      details.grantId !== undefined
        ? ((await p.Grant.find(details.grantId)) as NonNullable<
            Awaited<ReturnType<Provider['Grant']['find']>>
          >)
        : new p.Grant({ accountId, clientId: details.params['client_id'] as string });
    const missing = details.prompt.details as {
      missingOIDCScope?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    grants.set(accountId, [...(grants.get(accountId) ?? []), grantId]);
    await p.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
  }

  const server: Server = createServer((req, res) => {
    if (provider === undefined) {
      res.statusCode = 503;
      res.end();
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/token' && req.method === 'POST') counts.requests++;
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/confirm)?$/.exec(path);
    if (m !== null) {
      interaction(req, res, m[2]).catch(() => {
        res.statusCode = 500;
        res.end();
      });
      return;
    }
    provider.callback()(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const oidc: TestOidc = {
    issuer,
    resources,
    authorizeUrl: `${issuer}/auth`,
    tokenUrl: `${issuer}/token`,
    counts,
    async setup(redirectUri) {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const jwk = { ...(await exportJWK(privateKey)), kid: 'test-es256', alg: 'ES256', use: 'sig' };
      const p = new Provider(issuer, {
        clients: [
          {
            ...CC_CLIENT,
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            token_endpoint_auth_method: 'client_secret_basic',
          },
          {
            ...CC_POST_CLIENT,
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            token_endpoint_auth_method: 'client_secret_post',
          },
          {
            ...WEB_CLIENT,
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            redirect_uris: [redirectUri],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ],
        jwks: { keys: [jwk] },
        ...(opts.fetch === undefined ? {} : { fetch: opts.fetch }),
        clientDefaults: { id_token_signed_response_alg: 'ES256' },
        cookies: { keys: ['oidc-test-cookie-key-0123456789'] },
        scopes: ['openid', 'offline_access', 'api:read'],
        findAccount: (_ctx: unknown, id: string) => ({
          accountId: id,
          claims: () => ({ sub: id }),
        }),
        interactions: {
          url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`,
        },
        pkce: { required: () => true },
        issueRefreshToken: () => true,
        rotateRefreshToken: () => true,
        features: {
          devInteractions: { enabled: false },
          clientCredentials: { enabled: true },
          revocation: { enabled: true },
          registration: { enabled: opts.registration === true },
          ...(opts.clientIdMetadataDocuments === true
            ? { clientIdMetadataDocument: { enabled: true, ack: 'draft-02' } }
            : {}),
          resourceIndicators: {
            enabled: true,
            defaultResource: () => resource,
            useGrantedResource: () => true,
            getResourceServerInfo: (_ctx: unknown, indicator: string) => {
              if (indicator !== resource && !(opts.otherResources ?? []).includes(indicator))
                throw new errors.InvalidTarget();
              return {
                scope: 'api:read',
                audience: indicator,
                accessTokenTTL: accessTokenTtl,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: 'ES256' } },
              };
            },
          },
        },
      });
      p.on('grant.success', (ctx: { oidc: { params?: Record<string, unknown> } }) => {
        const type = ctx.oidc.params?.['grant_type'] as keyof GrantCounts | undefined;
        if (type !== undefined && type in counts) counts[type]++;
      });
      type Ctx = { oidc: { params?: Record<string, unknown>; client?: { clientId: string } } };
      p.on('authorization.success', (ctx: Ctx) => {
        resources.push({
          endpoint: 'authorization',
          clientId: ctx.oidc.client?.clientId,
          resource: ctx.oidc.params?.['resource'],
        });
      });
      p.on('grant.success', (ctx: Ctx) => {
        resources.push({
          endpoint: 'token',
          grantType: ctx.oidc.params?.['grant_type'] as string | undefined,
          clientId: ctx.oidc.client?.clientId,
          resource: ctx.oidc.params?.['resource'],
        });
      });
      p.on('grant.error', () => {
        counts.errors++;
      });
      provider = p;
    },
    setAccessTokenTtl(seconds) {
      accessTokenTtl = seconds;
    },
    async revokeAccount(accountId) {
      const p = provider as Provider;
      for (const id of grants.get(accountId) ?? []) {
        const grant = await p.Grant.find(id);
        await grant?.destroy();
      }
    },
    async browse(authorizeUrl, login) {
      const jar = new Map<string, string>();
      let url = authorizeUrl;
      let method = 'GET';
      let body: string | undefined;
      const browserFetch = opts.browserFetch ?? fetch;
      for (let i = 0; i < 20; i++) {
        const res = await browserFetch(url, {
          method,
          body,
          redirect: 'manual',
          headers: {
            cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
            ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
          },
        });
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(';');
          const eq = (pair as string).indexOf('=');
          const name = (pair as string).slice(0, eq);
          const value = (pair as string).slice(eq + 1);
          if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
          else jar.set(name, value);
        }
        const location = res.headers.get('location');
        if (res.status >= 300 && res.status < 400 && location !== null) {
          await res.arrayBuffer();
          url = new URL(location, url).href;
          method = 'GET';
          body = undefined;
          continue;
        }
        if (url.startsWith(`${issuer}/interaction/`) && res.status === 200) {
          const page = (await res.json()) as { prompt: string };
          const base = url.replace(/\/(login|confirm)$/, '');
          method = 'POST';
          if (page.prompt === 'login') {
            url = `${base}/login`;
            body = new URLSearchParams({ login }).toString();
          } else {
            url = `${base}/confirm`;
            body = '';
          }
          continue;
        }
        return { status: res.status, url, body: await res.text() };
      }
      throw new Error('too many redirects');
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return oidc;
}

export interface ResourceServer {
  readonly url: string;
  /** Every access token presented, in order. */
  readonly tokens: string[];
  /** The next `n` requests with a valid token are answered 401 anyway (a revoked token). */
  rejectNext(n: number): void;
  close(): Promise<void>;
}

/**
 * A resource server: accepts only `Authorization: Bearer <JWT access token>` that verifies
 * against the issuer's JWKS with `typ: at+jwt`, the issuer and the audience `resource`.
 * It answers with the subject's data and echoes the token back (plain and base64), as a
 * careless API might; the proxy must scrub it.
 */
export async function startResourceServer(issuer: () => string): Promise<ResourceServer> {
  const tokens: string[] = [];
  let reject = 0;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  let url = '';
  const server = createServer((req, res) => {
    void (async () => {
      const m = /^Bearer ([\x21-\x7e]+)$/.exec(req.headers.authorization ?? '');
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (m === null) return send(401, { error: 'invalid_token' });
      const token = m[1] as string;
      tokens.push(token);
      jwks ??= createRemoteJWKSet(new URL(`${issuer()}/jwks`));
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, jwks, {
          issuer: issuer(),
          audience: url,
          typ: 'at+jwt',
        }));
      } catch {
        return send(401, { error: 'invalid_token' });
      }
      if (reject > 0) {
        reject--;
        return send(401, { error: 'invalid_token', echo: token });
      }
      return send(200, {
        sub: payload.sub,
        client_id: payload['client_id'],
        scope: payload['scope'],
        data: `data-of-${String(payload.sub)}`,
        path: req.url,
        echo: token,
        echo_b64: Buffer.from(token).toString('base64'),
        echo_header: req.headers.authorization,
      });
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    tokens,
    rejectNext(n) {
      reject = n;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
