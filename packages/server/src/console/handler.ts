/**
 * The web console (`/console/`), served by the admin listener: a login form that exchanges
 * an operator token for a session cookie, a static page and its script, and
 * `/console/api/v1/...`, an allow-listed pass-through to the admin API made with the
 * session's operator token.
 *
 * MUST: every console response carries a strict CSP (`default-src 'self'`, no inline
 * script or style) and `no-store`. MUST: every state-changing request (login, logout, any
 * non-GET API call) comes from the console's own origin (`Origin`, or `Sec-Fetch-Site:
 * same-origin`), and every one but login also carries the session's CSRF token in
 * `x-nexus-csrf`. MUST NOT: a secret reach the browser: the pass-through allows only the
 * admin routes that never answer with one (no enrollment tokens, no credential writes), and
 * the lease JWT in audit records is replaced by its claims.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { NexusError, isNexusError } from '@nexus-proxy/protocol';
import type { Store } from '../store/store.js';
import { randomId, sha256Hex } from '../util/ids.js';
import type { Logger } from '../util/logger.js';
import { timingSafeEqualString } from '../util/timing-safe.js';
import { errorSummary } from '../proxy/pipeline.js';
import { sendProblem } from '../proxy/problem.js';
import { readBody } from '../proxy/read-body.js';
import { ConsoleSessions, type SessionLimits, type SessionTable } from './sessions.js';
import { loginPage, redirectPage } from './login-page.js';
import type { PersonTokenTable } from '../admin/callers.js';
import type { ConsoleOidc } from './oidc.js';
import { consoleApiAllowed, redactAuditRecords } from './api.js';

/** Where the console lives on the admin listener. */
export const CONSOLE_PREFIX = '/console';

/** The session cookie's name (scoped to {@link CONSOLE_PREFIX}). */
export const SESSION_COOKIE = 'nexus_console';

/** The header carrying the session's CSRF token. */
export const CSRF_HEADER = 'x-nexus-csrf';

/** The Content-Security-Policy of every console response. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "object-src 'none'",
].join('; ');

/** Options of {@link createConsoleHandler}. */
export interface ConsoleOptions {
  /** Looks operator tokens up by hash at login. */
  readonly store: Pick<Store, 'findOperatorTokenByHash'>;
  /** The admin API's own base URL (known once its listener is bound). */
  readonly adminUrl: () => string | undefined;
  readonly clock: () => number;
  readonly logger: Logger;
  readonly sessions?: SessionLimits;
  /**
   * The session table to use instead of one of this process's own (`nexus up --workers`:
   * the primary's, so a login on one worker is valid on every other). `sessions` and the
   * person-token revocation at a session's end then do not apply here.
   */
  readonly sessionTable?: SessionTable;
  /** OIDC login for people (`admin.console.oidc`); absent: operator tokens only. */
  readonly oidc?: ConsoleOidc;
  /**
   * Where person tokens are minted (shared with the admin handler; under `nexus up
   * --workers N` the primary's table, app/worker-sessions.ts).
   */
  readonly people?: PersonTokenTable;
}

/** The cookie binding an OIDC login in progress to the browser that started it. */
export const OIDC_FLOW_COOKIE = 'nexus_console_oidc';

/** True when the admin listener should hand `pathname` to the console. */
export function isConsolePath(pathname: string): boolean {
  return pathname === CONSOLE_PREFIX || pathname.startsWith(CONSOLE_PREFIX + '/');
}

const STATIC_DIR = fileURLToPath(new URL('../../console-static/', import.meta.url));
const STATIC_FILES: Readonly<Record<string, string>> = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};
const OPERATOR_TOKEN = /^nxo_[A-Za-z0-9_-]{20,100}$/;
const MAX_API_BODY = 64 * 1024;

const staticCache = new Map<string, Buffer>();
function staticFile(name: string): Buffer {
  let b = staticCache.get(name);
  if (b === undefined) {
    b = readFileSync(STATIC_DIR + name);
    staticCache.set(name, b);
  }
  return b;
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function isTls(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

/**
 * True when the request comes from a page of this very origin. Browsers send `Origin` on
 * every POST, PUT and DELETE (fetch and forms alike); without it, only `Sec-Fetch-Site:
 * same-origin` will do. Anything else (another site, a client that is not a browser) is
 * refused: the console is for browsers, the admin API for everything else.
 */
function sameOrigin(req: IncomingMessage): boolean {
  const host = req.headers.host;
  if (host === undefined || host === '') return false;
  const origin = req.headers.origin;
  // Browsers send `Origin: null` for some same-origin form posts (privacy modes, sandboxed
  // documents); `Sec-Fetch-Site` is set by the browser alone and cannot be forged by a page.
  if (origin !== undefined && origin !== 'null')
    return origin === `${isTls(req) ? 'https' : 'http'}://${host}`;
  return req.headers['sec-fetch-site'] === 'same-origin';
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'content-length': 0 });
  res.end();
}

/** Builds the console handler; mount it for {@link isConsolePath} paths. */
export function createConsoleHandler(options: ConsoleOptions) {
  // A person's token ends with their session (logout, expiry, eviction).
  const sessions: SessionTable =
    options.sessionTable ??
    new ConsoleSessions(options.clock, options.sessions, (s) => {
      if (s.user.type === 'person')
        void Promise.resolve(options.people?.revoke(s.bearer)).catch(() => undefined);
    });

  const cookie = (req: IncomingMessage, value: string, maxAge: number): string =>
    [
      `${SESSION_COOKIE}=${value}`,
      `Path=${CONSOLE_PREFIX}`,
      `Max-Age=${maxAge}`,
      'HttpOnly',
      'SameSite=Strict',
      ...(isTls(req) ? ['Secure'] : []),
    ].join('; ');

  const sessionOf = async (req: IncomingMessage) => {
    const id = cookieValue(req, SESSION_COOKIE);
    return { id, session: await sessions.get(id) };
  };

  /** The session of a state-changing request, with its origin and CSRF token checked. */
  const guarded = async (req: IncomingMessage) => {
    const { id, session } = await sessionOf(req);
    if (session === undefined) throw new NexusError('unauthorized', 'no console session');
    if (!sameOrigin(req)) throw new NexusError('forbidden', 'cross-origin request refused');
    const sent = req.headers[CSRF_HEADER];
    if (typeof sent !== 'string' || !timingSafeEqualString(sent, session.csrf))
      throw new NexusError('forbidden', 'missing or wrong CSRF token');
    return { id, session };
  };

  async function login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!sameOrigin(req)) throw new NexusError('forbidden', 'cross-origin request refused');
    const body = (await readBody(req, 4096)).toString('utf8');
    const token = new URLSearchParams(body).get('token')?.trim() ?? '';
    const row = OPERATOR_TOKEN.test(token)
      ? await options.store.findOperatorTokenByHash(sha256Hex(token))
      : undefined;
    if (row === undefined) {
      send(
        res,
        401,
        'text/html; charset=utf-8',
        loginPage('That operator token is not valid.', options.oidc !== undefined),
      );
      return;
    }
    const { id } = await sessions.create(token, {
      type: 'operator_token',
      name: row.name,
      role: 'admin',
    });
    options.logger.info({ operator: row.name }, 'console login');
    res.setHeader('set-cookie', cookie(req, id, sessions.maxAgeSeconds));
    redirect(res, `${CONSOLE_PREFIX}/`);
  }

  /** `GET /console/oidc/login`: starts the code flow and sends the browser to the provider. */
  async function oidcStart(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (options.oidc === undefined) throw new NexusError('not_found');
    const binding = randomId(32);
    const authorize = await options.oidc.start(binding).catch((err: unknown) => {
      throw new NexusError('upstream_unreachable', 'the OIDC provider cannot be reached', {
        cause: err,
      });
    });
    // Lax, not Strict: the provider sends the browser back with a cross-site navigation.
    res.setHeader(
      'set-cookie',
      [
        `${OIDC_FLOW_COOKIE}=${binding}`,
        `Path=${CONSOLE_PREFIX}/oidc`,
        'Max-Age=600',
        'HttpOnly',
        'SameSite=Lax',
        ...(isTls(req) ? ['Secure'] : []),
      ].join('; '),
    );
    redirect(res, authorize);
  }

  /** `GET /console/oidc/callback`: completes the flow and opens a session for the person. */
  async function oidcCallback(req: IncomingMessage, res: ServerResponse, url: URL) {
    if (options.oidc === undefined || options.people === undefined)
      throw new NexusError('not_found');
    const clearFlow = [
      `${OIDC_FLOW_COOKIE}=`,
      `Path=${CONSOLE_PREFIX}/oidc`,
      'Max-Age=0',
      'HttpOnly',
      'SameSite=Lax',
      ...(isTls(req) ? ['Secure'] : []),
    ].join('; ');
    let person;
    try {
      person = await options.oidc.finish(cookieValue(req, OIDC_FLOW_COOKIE), url.searchParams);
    } catch (err) {
      const e = isNexusError(err) ? err : new NexusError('unauthorized');
      // The cause (a provider's error, a failed check) goes to the log, never to the page.
      options.logger.warn({ err: errorSummary(err) }, 'console OIDC login refused');
      res.setHeader('set-cookie', clearFlow);
      const why =
        e.code === 'role_forbidden'
          ? 'Your account has no role in this console.'
          : 'The single sign-on login failed. Try again.';
      send(res, 401, 'text/html; charset=utf-8', loginPage(why, true));
      return;
    }
    const bearer = await options.people.issue(person);
    let created;
    try {
      created = await sessions.create(bearer, {
        type: 'person',
        name: person.name,
        role: person.role,
      });
    } catch (err) {
      // No session holds the token: it ends now (fail closed), not with a session.
      await Promise.resolve(options.people.revoke(bearer)).catch(() => undefined);
      throw err;
    }
    const { id } = created;
    options.logger.info({ person: person.name, role: person.role }, 'console login');
    res.setHeader('set-cookie', [clearFlow, cookie(req, id, sessions.maxAgeSeconds)]);
    // A page of our own origin moves on to the console: a SameSite=Strict cookie set in
    // answer to a cross-site navigation is not sent on that navigation's redirects.
    send(res, 200, 'text/html; charset=utf-8', redirectPage(`${CONSOLE_PREFIX}/`));
  }

  async function api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    const state = await (method === 'GET' ? sessionOf(req) : guarded(req));
    if (state.session === undefined) throw new NexusError('unauthorized', 'no console session');
    const path = url.pathname.slice(`${CONSOLE_PREFIX}/api`.length);
    if (!consoleApiAllowed(method, path)) throw new NexusError('not_found');
    const base = options.adminUrl();
    if (base === undefined) throw new NexusError('internal_error');
    const target = new URL(base + path + url.search);
    // The allow-list matched `path` as given: nothing may normalise it into another route.
    if (target.pathname !== path) throw new NexusError('not_found');
    const body = method === 'GET' ? undefined : await readBody(req, MAX_API_BODY);
    const answer = await fetch(target, {
      method,
      headers: {
        authorization: `Bearer ${state.session.bearer}`,
        ...(body !== undefined && body.length > 0 ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined && body.length > 0 ? body : undefined,
      redirect: 'manual',
    });
    if (answer.status === 401) {
      // The operator token was revoked (or the person token ended) since login: the
      // session ends with it.
      await sessions.delete(state.id);
      await answer.body?.cancel();
      throw new NexusError('unauthorized', 'the operator token is no longer valid');
    }
    const type = answer.headers.get('content-type') ?? 'application/octet-stream';
    let text = await answer.text();
    if (path === '/v1/audit' && answer.status === 200) text = redactAuditRecords(text);
    if (answer.status === 204) {
      res.writeHead(204);
      res.end();
      return;
    }
    send(res, answer.status, type, text);
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomId(12);
    res.setHeader('nexus-request-id', requestId);
    res.setHeader('content-security-policy', CONSOLE_CSP);
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('x-frame-options', 'DENY');
    // same-origin, not no-referrer: with no-referrer, Chromium sends `Origin: null` on the
    // login form's POST.
    res.setHeader('referrer-policy', 'same-origin');
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-resource-policy', 'same-origin');
    res.setHeader('cache-control', 'no-store');
    try {
      const url = new URL(req.url ?? '/', 'http://console.invalid');
      const path = url.pathname;
      const method = req.method ?? 'GET';
      const only = (m: string) => {
        if (method !== m) throw new NexusError('method_not_allowed');
      };
      if (path === CONSOLE_PREFIX) return redirect(res, `${CONSOLE_PREFIX}/`);
      if (path === `${CONSOLE_PREFIX}/`) {
        only('GET');
        if ((await sessionOf(req)).session === undefined)
          return redirect(res, `${CONSOLE_PREFIX}/login`);
        return send(res, 200, 'text/html; charset=utf-8', staticFile('index.html'));
      }
      if (path === `${CONSOLE_PREFIX}/login`) {
        if (method === 'POST') return await login(req, res);
        only('GET');
        if ((await sessionOf(req)).session !== undefined)
          return redirect(res, `${CONSOLE_PREFIX}/`);
        return send(
          res,
          200,
          'text/html; charset=utf-8',
          loginPage(undefined, options.oidc !== undefined),
        );
      }
      if (path === `${CONSOLE_PREFIX}/oidc/login`) {
        only('GET');
        return await oidcStart(req, res);
      }
      if (path === `${CONSOLE_PREFIX}/oidc/callback`) {
        only('GET');
        return await oidcCallback(req, res, url);
      }
      if (path === `${CONSOLE_PREFIX}/logout`) {
        only('POST');
        await sessions.delete((await guarded(req)).id);
        res.setHeader('set-cookie', cookie(req, '', 0));
        res.writeHead(204);
        res.end();
        return;
      }
      if (path === `${CONSOLE_PREFIX}/session`) {
        only('GET');
        const { session } = await sessionOf(req);
        if (session === undefined) throw new NexusError('unauthorized', 'no console session');
        return send(
          res,
          200,
          'application/json',
          JSON.stringify({
            csrf_token: session.csrf,
            csrf_header: CSRF_HEADER,
            user: session.user,
          }),
        );
      }
      if (path.startsWith(`${CONSOLE_PREFIX}/static/`)) {
        only('GET');
        const name = path.slice(`${CONSOLE_PREFIX}/static/`.length);
        const type = STATIC_FILES[name];
        if (type === undefined || !Object.hasOwn(STATIC_FILES, name))
          throw new NexusError('not_found');
        return send(res, 200, type, staticFile(name));
      }
      if (path.startsWith(`${CONSOLE_PREFIX}/api/`)) return await api(req, res, url);
      throw new NexusError('not_found');
    } catch (err) {
      const e = isNexusError(err)
        ? err
        : new NexusError('internal_error', undefined, { cause: err });
      if (!isNexusError(err) || e.status >= 500)
        options.logger.error({ request_id: requestId, err: errorSummary(err) }, 'console error');
      sendProblem(res, e, requestId, e.code === 'body_too_large');
    }
  };
}
