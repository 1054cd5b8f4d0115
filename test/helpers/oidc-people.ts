/**
 * A real OpenID Provider (`oidc-provider` on loopback) for people logging in to the web
 * console (issue 15): one confidential client with PKCE required, accounts with an `email`
 * and a `groups` claim in the ID token, and plain HTML login and consent pages, so a real
 * browser (or `login()`, a scripted one over HTTP) can sign in as any account.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

export const CONSOLE_CLIENT = {
  client_id: 'nexus-console',
  client_secret: 'console-oidc-secret-0123456789abcdefgh',
};

export interface PeopleIdp {
  readonly issuer: string;
  /** Creates the provider once the console's redirect URI is known. */
  /**
   * `emails`: an account's `email` and whether the provider says it verified it (default:
   * `<id>@example.org`, verified).
   */
  setup(
    redirectUri: string,
    groups: Record<string, string[]>,
    emails?: Record<string, { email: string; verified: boolean }>,
  ): Promise<void>;
  close(): Promise<void>;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function html(res: ServerResponse, body: string): void {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><body>${body}</body></html>`);
}

export async function startPeopleIdp(): Promise<PeopleIdp> {
  let provider: Provider | undefined;

  async function interaction(req: IncomingMessage, res: ServerResponse, step?: string) {
    const p = provider as Provider;
    const details = await p.interactionDetails(req, res);
    if (req.method === 'GET') {
      if (details.prompt.name === 'login')
        return html(
          res,
          `<form method="post" action="/interaction/${details.uid}/login">` +
            `<input name="login" id="login"><button id="signin">Sign in</button></form>`,
        );
      return html(
        res,
        `<form method="post" action="/interaction/${details.uid}/confirm">` +
          `<button id="allow">Allow</button></form>`,
      );
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
    const accountId = details.session?.accountId as string;
    const grant =
      details.grantId !== undefined
        ? ((await p.Grant.find(details.grantId)) as NonNullable<
            Awaited<ReturnType<Provider['Grant']['find']>>
          >)
        : new p.Grant({ accountId, clientId: details.params['client_id'] as string });
    const missing = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await p.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
  }

  const server = createServer((req, res) => {
    if (provider === undefined) {
      res.statusCode = 503;
      res.end();
      return;
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
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

  return {
    issuer,
    async setup(redirectUri, groups, emails = {}) {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const jwk = {
        ...(await exportJWK(privateKey)),
        kid: 'people-es256',
        alg: 'ES256',
        use: 'sig',
      };
      provider = new Provider(issuer, {
        clients: [
          {
            ...CONSOLE_CLIENT,
            grant_types: ['authorization_code'],
            response_types: ['code'],
            redirect_uris: [redirectUri],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ],
        jwks: { keys: [jwk] },
        clientDefaults: { id_token_signed_response_alg: 'ES256' },
        cookies: { keys: ['people-idp-cookie-key-0123456789'] },
        scopes: ['openid', 'email', 'groups'],
        claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
        // Real providers (Keycloak, Okta, Entra) put the groups in the ID token.
        conformIdTokenClaims: false,
        findAccount: (_ctx: unknown, id: string) => ({
          accountId: id,
          claims: () => ({
            sub: id,
            email: emails[id]?.email ?? `${id}@example.org`,
            email_verified: emails[id]?.verified ?? true,
            groups: groups[id] ?? [],
          }),
        }),
        interactions: {
          url: (_ctx: unknown, i: { uid: string }) => `/interaction/${i.uid}`,
        },
        pkce: { required: () => true },
        features: { devInteractions: { enabled: false } },
      });
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A scripted browser over HTTP: a cookie jar shared by every host (ports do not split cookies). */
export class CookieBrowser {
  readonly jar = new Map<string, string>();

  cookie(name: string): string | undefined {
    return this.jar.get(name);
  }

  async go(
    url: string,
    init: { method?: string; form?: Record<string, string>; origin?: string } = {},
  ): Promise<{ status: number; url: string; body: string; headers: Headers }> {
    let method = init.method ?? 'GET';
    let body = init.form === undefined ? undefined : new URLSearchParams(init.form).toString();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(url, {
        method,
        body,
        redirect: 'manual',
        headers: {
          cookie: [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '),
          ...(body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
          ...(init.origin === undefined ? {} : { origin: init.origin }),
        },
      });
      for (const c of res.headers.getSetCookie()) {
        const pair = c.split(';')[0] as string;
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq);
        const value = pair.slice(eq + 1);
        if (value === '' || /max-age=0|expires=Thu, 01 Jan 1970/i.test(c)) this.jar.delete(name);
        else this.jar.set(name, value);
      }
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location !== null) {
        await res.arrayBuffer();
        url = new URL(location, url).href;
        method = 'GET';
        body = undefined;
        continue;
      }
      return { status: res.status, url, body: await res.text(), headers: res.headers };
    }
    throw new Error('too many redirects');
  }

  /**
   * Logs in to the console at `adminUrl` as `account` through the provider's pages; returns
   * the last answer (the console's callback page, or its refusal).
   */
  async login(adminUrl: string, account: string) {
    let r = await this.go(`${adminUrl}/console/oidc/login`);
    for (let i = 0; i < 4 && r.url.includes('/interaction/'); i++) {
      const action = /action="([^"]+)"/.exec(r.body)?.[1];
      if (action === undefined) throw new Error(`no form at ${r.url}: ${r.body}`);
      r = await this.go(new URL(action, r.url).href, {
        method: 'POST',
        form: action.endsWith('/login') ? { login: account } : {},
      });
    }
    return r;
  }
}
