/**
 * Issue 15, the web console: a spawned `nexus up`, the real SDK as the agent, and Debian's
 * Chromium driven by playwright-core. The security properties are checked over plain HTTP
 * first (session, CSRF, origin, CSP, allow-list, no secret in any answer), then an operator
 * uses the console in the browser: logs in, watches an agent's request appear in the
 * audit, filters it, approves and denies requests held by an `approve` rule, revokes the
 * agent's lease and the agent's next call fails.
 *
 * NEXUS_CONSOLE_SCREENSHOTS=1 (`npm run console:screenshots`) also writes a screenshot of
 * each page to docs/console/.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf as agentCode } from './helpers/agents.js';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import { leaseHash } from '../packages/server/src/audit/record.js';

const SECRET = 'ghp_consoleE2EsecretValue0123456789abcdef';
const SECRET2 = 'oauth-client-secret-console-0123456789';
const CHROMIUM = process.env.NEXUS_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.NEXUS_CONSOLE_SCREENSHOTS === '1';
/** The body of held requests: the console must never show it. */
const HELD_BODY = '{"notes":"held-body-never-shown-4711"}';

interface Pending {
  id: string;
  agent: string;
  service: string;
  method: string;
  path: string;
  intent: string;
}

interface Seen {
  status: number;
  headers: Headers;
  body: string;
}

describe('the web console', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;
  let browser: Browser | undefined;
  /** Every console answer of this file (HTTP and browser), for the no-secret check. */
  const seen: { url: string; headers: Record<string, string>; body: string }[] = [];

  /** A request to the console as a browser would send it (Origin of the admin listener). */
  async function con(
    path: string,
    init: {
      method?: string;
      cookie?: string;
      csrf?: string;
      origin?: string | null;
      body?: string;
      type?: string;
    } = {},
  ): Promise<Seen> {
    const headers: Record<string, string> = {};
    if (init.origin !== null) headers.origin = init.origin ?? node.adminUrl;
    if (init.cookie !== undefined) headers.cookie = init.cookie;
    if (init.csrf !== undefined) headers['x-nexus-csrf'] = init.csrf;
    if (init.body !== undefined) headers['content-type'] = init.type ?? 'application/json';
    const res = await fetch(node.adminUrl + path, {
      method: init.method ?? 'GET',
      headers,
      body: init.body,
      redirect: 'manual',
    });
    const body = await res.text();
    seen.push({ url: path, headers: Object.fromEntries(res.headers), body });
    return { status: res.status, headers: res.headers, body };
  }

  const codeOf = (r: Seen) => (JSON.parse(r.body) as { code?: string }).code;

  async function login(): Promise<{ cookie: string; csrf: string; setCookie: string }> {
    const r = await con('/console/login', {
      method: 'POST',
      body: `token=${encodeURIComponent(node.operatorToken)}`,
      type: 'application/x-www-form-urlencoded',
    });
    expect(r.status).toBe(303);
    const setCookie = r.headers.get('set-cookie') ?? '';
    const cookie = setCookie.split(';')[0] as string;
    const s = await con('/console/session', { cookie });
    expect(s.status).toBe(200);
    return { cookie, csrf: (JSON.parse(s.body) as { csrf_token: string }).csrf_token, setCookie };
  }

  /** Waits until the admin API lists a held request with `intent`, and returns it. */
  async function heldWith(intent: string): Promise<Pending> {
    for (let i = 0; i < 250; i++) {
      const r = await node.admin<{ approvals: Pending[] }>('GET', '/v1/approvals');
      const found = r.body.approvals.find((a) => a.intent === intent);
      if (found !== undefined) return found;
      await new Promise((res) => setTimeout(res, 40));
    }
    throw new Error(`no held request "${intent}"`);
  }

  /** How many requests for `path` reached the upstream. */
  const received = (path: string) => upstream.requests.filter((r) => r.url === path).length;

  /** A POST the `releases-need-a-human` rule holds. */
  const release = (a: NexusAgent, path: string, intent: string) =>
    a.fetch('echo', path, {
      method: 'POST',
      body: HELD_BODY,
      headers: { 'content-type': 'application/json' },
      intent,
    });

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
        unset: { upstream: upstream.url, auth: { type: 'bearer', credential: 'never-set' } },
        // The recording upstream stands in for the provider: the connect button's popup
        // lands on its /authorize.
        mail: {
          upstream: upstream.url,
          auth: {
            type: 'oauth2_authorization_code',
            credential: 'mail-client',
            authorize_url: `${upstream.url}/authorize`,
            token_url: `${upstream.url}/token`,
            scope: 'mail.read',
          },
        },
      },
      agents: { bot: { roles: ['reader'] }, other: { roles: [] } },
      policies: [
        { id: 'read-echo', allow: { roles: ['reader'], services: ['echo'], methods: ['GET'] } },
        { id: 'no-admin', deny: { services: ['echo'], paths: ['/admin/**'] } },
        {
          id: 'releases-need-a-human',
          approve: {
            roles: ['reader'],
            services: ['echo'],
            methods: ['POST'],
            paths: ['/releases/**'],
          },
          timeout: '30s',
        },
      ],
    });
    await node.setCredential('echo-token', { value: SECRET });
    await node.setCredential('mail-client', { client_id: 'console-app', client_secret: SECRET2 });
    agent = await node.enroll('bot');
  });

  afterAll(async () => {
    await browser?.close();
    agent?.close();
    await node?.stop();
    await upstream?.close();
  });

  describe('security without a browser', () => {
    it('refuses everything but the login page and static files without a session', async () => {
      const page = await con('/console/');
      expect(page.status).toBe(303);
      expect(page.headers.get('location')).toBe('/console/login');
      for (const path of ['/console/api/v1/agents', '/console/api/v1/audit', '/console/session']) {
        const r = await con(path);
        expect(r.status, path).toBe(401);
        expect(codeOf(r)).toBe('unauthorized');
      }
      const post = await con('/console/api/v1/leases/revoke-all', { method: 'POST', csrf: 'x' });
      expect(post.status).toBe(401);
      // A forged cookie is no session either.
      const forged = await con('/console/api/v1/agents', { cookie: 'nexus_console=forged' });
      expect(forged.status).toBe(401);
      expect((await con('/console/login')).status).toBe(200);
      expect((await con('/console/static/app.js')).status).toBe(200);
      expect((await con('/console/static/../index.html')).status).toBe(404);
      expect((await con('/console/static/index.html')).status).toBe(404);
    });

    it('logs in with an operator token only, from its own origin, into a strict cookie', async () => {
      const wrong = await con('/console/login', {
        method: 'POST',
        body: 'token=nxo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
        type: 'application/x-www-form-urlencoded',
      });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('set-cookie')).toBeNull();
      const crossSite = await con('/console/login', {
        method: 'POST',
        origin: 'http://evil.example',
        body: `token=${encodeURIComponent(node.operatorToken)}`,
        type: 'application/x-www-form-urlencoded',
      });
      expect(crossSite.status).toBe(403);
      expect(crossSite.headers.get('set-cookie')).toBeNull();

      const { setCookie } = await login();
      const attrs = setCookie.split(';').map((a) => a.trim());
      expect(attrs[0]).toMatch(/^nexus_console=[A-Za-z0-9_-]{43}$/);
      expect(attrs).toContain('HttpOnly');
      expect(attrs).toContain('SameSite=Strict');
      expect(attrs).toContain('Path=/console');
      // The admin listener is plain HTTP here: Secure is set only over TLS.
      expect(attrs).not.toContain('Secure');
    });

    it('refuses a state-changing request without the CSRF token or from another origin', async () => {
      const { cookie, csrf } = await login();
      const path = '/console/api/v1/agents/other/disable';
      const noToken = await con(path, { method: 'POST', cookie });
      expect(noToken.status).toBe(403);
      expect(codeOf(noToken)).toBe('forbidden');
      const wrongToken = await con(path, { method: 'POST', cookie, csrf: csrf.slice(1) + 'A' });
      expect(wrongToken.status).toBe(403);
      const otherOrigin = await con(path, {
        method: 'POST',
        cookie,
        csrf,
        origin: 'http://evil.example',
      });
      expect(otherOrigin.status).toBe(403);
      const noOrigin = await con(path, { method: 'POST', cookie, csrf, origin: null });
      expect(noOrigin.status).toBe(403);
      const agentNow = await node.admin<{ disabled: boolean }>('GET', '/v1/agents/other');
      expect(agentNow.body.disabled).toBe(false);

      const ok = await con(path, { method: 'POST', cookie, csrf });
      expect(ok.status).toBe(200);
      expect(
        (await node.admin<{ disabled: boolean }>('GET', '/v1/agents/other')).body.disabled,
      ).toBe(true);
      expect(
        (await con('/console/api/v1/agents/other/enable', { method: 'POST', cookie, csrf })).status,
      ).toBe(200);
    });

    it('passes only allow-listed admin routes, and no dot segment', async () => {
      const { cookie, csrf } = await login();
      const post = (path: string, body = '{}') => con(path, { method: 'POST', cookie, csrf, body });
      // An enrollment token is a secret: the console never asks for one.
      expect((await post('/console/api/v1/agents/bot/enrollment-tokens')).status).toBe(404);
      expect(
        (
          await con('/console/api/v1/credentials/echo-token', {
            method: 'PUT',
            cookie,
            csrf,
            body: '{"fields":{"value":"x"}}',
          })
        ).status,
      ).toBe(404);
      expect((await post('/console/api/v1/vault/rotate-master-key')).status).toBe(404);
      expect((await con('/console/api/v1/audit/export', { cookie })).status).toBe(404);
      // Dot segments are resolved first (`%2e%2e` too, as URLs do), then the allow-list
      // applies; an encoded slash never splits a segment.
      expect((await post('/console/api/v1/leases/%2e%2e/revoke')).status).toBe(404);
      expect(
        (await post('/console/api/v1/agents/bot%2f..%2fenrollment-tokens/disable')).status,
      ).toBe(404);
      // fetch would normalise `..` away before sending: this one goes out exactly as written.
      const raw = await new Promise<number>((resolve, reject) => {
        const u = new URL(node.adminUrl);
        const req = httpRequest(
          {
            host: u.hostname,
            port: u.port,
            method: 'POST',
            path: '/console/api/v1/leases/x/../../agents/bot/enrollment-tokens',
            headers: { origin: node.adminUrl, cookie, 'x-nexus-csrf': csrf },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(raw).toBe(404);
      const leases = await node.admin<{ leases: unknown[] }>('GET', '/v1/leases');
      expect(leases.body.leases.length).toBeGreaterThan(0);
    });

    it('sends the strict CSP and no-store on every console answer', async () => {
      const { cookie } = await login();
      for (const path of [
        '/console/login',
        '/console/',
        '/console/static/app.js',
        '/console/static/app.css',
        '/console/api/v1/agents',
        '/console/api/v1/nope',
        '/console/nope',
      ]) {
        const r = await con(path, { cookie });
        const csp = r.headers.get('content-security-policy') ?? '';
        expect(csp, path).toContain("default-src 'self'");
        expect(csp, path).toContain("script-src 'self'");
        expect(csp, path).toContain("frame-ancestors 'none'");
        expect(csp, path).not.toContain('unsafe-inline');
        expect(r.headers.get('x-content-type-options'), path).toBe('nosniff');
        expect(r.headers.get('cache-control'), path).toBe('no-store');
      }
      // The page itself holds no inline script or style.
      const page = await con('/console/', { cookie });
      expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(page.body).not.toMatch(/\son[a-z]+=|style=/);
    });

    it('shows audit records with the lease id and hash, never the lease JWT', async () => {
      await agent.fetch('echo', '/lease-check', { intent: 'lease check' });
      const { cookie } = await login();
      const r = await con('/console/api/v1/audit?kind=request&limit=5', { cookie });
      const { records } = JSON.parse(r.body) as {
        records: { intent: string; signature?: Record<string, unknown> }[];
      };
      const rec = records.find((x) => x.intent === 'lease check');
      expect(rec?.signature?.['value']).toMatch(/^[a-z0-9]+=:/);
      expect(rec?.signature?.['lease']).toBeUndefined();
      // The record holds the lease's hash (issue 14); the lease is its `lease_id`.
      expect(rec?.signature?.['lease_hash']).toBe(leaseHash(agent.lease));
      expect((rec as { lease_id?: string } | undefined)?.lease_id).toBe(agent.claims.jti);
      expect(r.body).not.toContain(agent.lease);
    });

    it('approves a held request only with the CSRF token', async () => {
      const call = release(agent, '/releases/csrf', 'csrf hold');
      const held = await heldWith('csrf hold');
      const { cookie, csrf } = await login();
      const listed = await con('/console/api/v1/approvals', { cookie });
      expect(listed.status).toBe(200);
      const view = (JSON.parse(listed.body) as { approvals: Pending[] }).approvals;
      expect(view.find((a) => a.id === held.id)).toMatchObject({
        agent: 'bot',
        service: 'echo',
        method: 'POST',
        path: '/releases/csrf',
      });
      expect(listed.body).not.toContain('held-body-never-shown');

      const path = `/console/api/v1/approvals/${held.id}/approve`;
      const noToken = await con(path, { method: 'POST', cookie });
      expect(noToken.status).toBe(403);
      expect(codeOf(noToken)).toBe('forbidden');
      const otherOrigin = await con(path, {
        method: 'POST',
        cookie,
        csrf,
        origin: 'http://evil.example',
      });
      expect(otherOrigin.status).toBe(403);
      // Nothing changed: still held, nothing forwarded.
      const still = await node.admin<{ approvals: Pending[] }>('GET', '/v1/approvals');
      expect(still.body.approvals.map((a) => a.id)).toContain(held.id);
      expect(received('/releases/csrf')).toBe(0);

      const ok = await con(path, { method: 'POST', cookie, csrf });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({
        state: 'approved',
        approver: { name: 'initial' },
      });
      expect((await call).status).toBe(200);
      expect(received('/releases/csrf')).toBe(1);
    });

    it('ends the session at logout', async () => {
      const { cookie, csrf } = await login();
      expect((await con('/console/logout', { method: 'POST', cookie })).status).toBe(403);
      const out = await con('/console/logout', { method: 'POST', cookie, csrf });
      expect(out.status).toBe(204);
      expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
      expect((await con('/console/api/v1/agents', { cookie })).status).toBe(401);
    });
  });

  describe('in Chromium', () => {
    let page: Page;
    const errors: string[] = [];

    async function shot(name: string): Promise<void> {
      if (!SHOTS) return;
      await mkdir(join(REPO, 'docs/console'), { recursive: true });
      await page.screenshot({ path: join(REPO, 'docs/console', `${name}.png`), fullPage: true });
    }

    beforeAll(async () => {
      if (!existsSync(CHROMIUM))
        throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // Root in a container has no user namespace for Chromium's own sandbox.
        args: ['--no-sandbox'],
      });
      page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(String(e)));
      // The kill switch asks first: the operator says yes.
      page.on('dialog', (d) => void d.accept());
      page.on('response', async (res) => {
        if (!res.url().startsWith(node.adminUrl)) return;
        const body = await res.text().catch(() => '');
        seen.push({ url: res.url(), headers: res.headers(), body });
      });
    });

    it('logs in with the operator token', async () => {
      await page.goto(`${node.adminUrl}/console/`);
      expect(new URL(page.url()).pathname).toBe('/console/login');
      await shot('login');
      await page.fill('#token', node.operatorToken);
      await page.click('button[type=submit]');
      await page.waitForSelector('tr[data-agent="bot"]');
      expect(new URL(page.url()).pathname).toBe('/console/');
      const cookies = await page.context().cookies();
      const c = cookies.find((x) => x.name === 'nexus_console');
      expect(c?.httpOnly).toBe(true);
      expect(c?.sameSite).toBe('Strict');
      // The page's script cannot read the session cookie.
      expect(await page.evaluate('document.cookie')).toBe('');
    });

    it("watches an agent's request appear in the audit explorer, with its signature and intent", async () => {
      await page.goto(`${node.adminUrl}/console/#audit`);
      await page.waitForSelector('#chain .ok');
      expect(await page.textContent('#chain')).toMatch(/Chain verified: \d+ records intact/);
      // The request is made while the page is open: it appears without a reload.
      const res = await agent.fetch('echo', '/issues/42', { intent: 'console watch 42' });
      expect(res.status).toBe(200);
      const row = page.locator('tr[data-kind="request"]', { hasText: 'console watch 42' });
      await row.waitFor({ timeout: 15_000 });
      await row.click();
      const detail = (await page.textContent('#record')) ?? '';
      expect(detail).toContain('"intent": "console watch 42"');
      expect(detail).toContain('"signature"');
      expect(detail).toMatch(/"value": "[a-z0-9]+=:/);
      expect(detail).toContain('"lease_hash"');
      await shot('audit');
    });

    it('filters the audit by decision, service and agent', async () => {
      await expect(
        agent.fetch('echo', '/admin/users', { intent: 'denied one' }),
      ).rejects.toMatchObject({ code: 'policy_denied' });
      await page.goto(`${node.adminUrl}/console/#audit`);
      await page.waitForSelector('tr[data-seq]');
      await page.selectOption('#audit-filters select[name=decision]', 'deny');
      await page.fill('#audit-filters input[name=service]', 'echo');
      await page.click('#audit-filters button[type=submit]');
      await page.waitForURL(/decision=deny/);
      // The filtered view replaces the unfiltered one when its answer arrives.
      const decisions = () =>
        page.$$eval('tr[data-seq]', (rows) => rows.map((r) => r.getAttribute('data-decision')));
      await expect.poll(async () => new Set(await decisions())).toEqual(new Set(['deny']));
      await page.locator('tr[data-seq]', { hasText: 'denied one' }).first().waitFor();
      await shot('audit-filtered');
      await page.fill('#audit-filters input[name=agent]', 'nexus://nobody');
      await page.click('#audit-filters button[type=submit]');
      await page.waitForURL(/agent=nexus/);
      await expect.poll(() => page.locator('tr[data-seq]').count()).toBe(0);
    });

    it('shows services with credential health, and explains a policy decision', async () => {
      await page.goto(`${node.adminUrl}/console/#services`);
      await page.waitForSelector('tr[data-service="echo"]');
      expect(await page.textContent('tr[data-service="echo"]')).toContain('set (v1');
      expect(await page.textContent('tr[data-service="unset"]')).toContain('not set');
      await shot('services');

      await page.goto(`${node.adminUrl}/console/#policies`);
      await page.waitForSelector('#explain');
      await page.selectOption('#explain select[name=agent]', 'bot');
      await page.selectOption('#explain select[name=service]', 'echo');
      await page.fill('#explain input[name=path]', '/admin/users');
      await page.click('#explain button[type=submit]');
      await page.waitForSelector('#explain-verdict .bad');
      expect(await page.textContent('#explain-verdict')).toBe('Decision: deny');
      expect(await page.textContent('#explain-result')).toContain('no-admin');
      await shot('policies');
    });

    it('starts an OAuth connection with the connect button', async () => {
      await page.goto(`${node.adminUrl}/console/#connections`);
      await page.waitForSelector('#connect');
      await page.selectOption('#connect select[name=service]', 'mail');
      await page.fill('#connect input[name=principal]', 'alice@example.com');
      await shot('connections');
      const popup = page.context().waitForEvent('page');
      await page.click('#connect button[type=submit]');
      const provider = await popup;
      await provider.waitForLoadState();
      const u = new URL(provider.url());
      expect(u.origin + u.pathname).toBe(`${upstream.url}/authorize`);
      expect(u.searchParams.get('client_id')).toBe('console-app');
      expect(u.searchParams.get('redirect_uri')).toBe(`${node.adminUrl}/v1/connections/callback`);
      expect(u.searchParams.get('code_challenge_method')).toBe('S256');
      await provider.close();
    });

    it("approves a held request from the page and the agent's call completes", async () => {
      await page.goto(`${node.adminUrl}/console/#approvals`);
      await page.getByText('Pending approvals (0)').waitFor();
      // Held while the page is open: it appears without a reload.
      const call = release(agent, '/releases/v2', 'console release v2');
      const row = page.locator('tr[data-approval]', { hasText: 'console release v2' });
      await row.waitFor({ timeout: 15_000 });
      const text = (await row.textContent()) ?? '';
      for (const part of ['bot', 'echo', 'POST /releases/v2', 'releases-need-a-human'])
        expect(text).toContain(part);
      await shot('approvals');
      expect(received('/releases/v2')).toBe(0);
      await row.getByRole('button', { name: 'Approve' }).click();
      const res = await call;
      expect(res.status).toBe(200);
      expect(((await res.json()) as { body: string }).body).toBe(HELD_BODY);
      await row.waitFor({ state: 'detached' });
      expect(received('/releases/v2')).toBe(1);
    });

    it('denies a second held request from the page: the agent gets approval_denied', async () => {
      await page.goto(`${node.adminUrl}/console/?deny#approvals`);
      await page.getByText('Pending approvals (0)').waitFor();
      const call = agentCode(release(agent, '/releases/v3', 'console release v3'));
      const row = page.locator('tr[data-approval]', { hasText: 'console release v3' });
      await row.waitFor({ timeout: 15_000 });
      await row.getByRole('button', { name: 'Deny' }).click();
      expect(await call).toBe('approval_denied');
      await row.waitFor({ state: 'detached' });
      expect(received('/releases/v3')).toBe(0);
    });

    it('disables and enables an agent', async () => {
      await page.goto(`${node.adminUrl}/console/#agents`);
      const row = page.locator('tr[data-agent="other"]');
      await row.getByRole('button', { name: 'Disable' }).click();
      await row.getByText('disabled').waitFor();
      const off = await node.admin<{ disabled: boolean }>('GET', '/v1/agents/other');
      expect(off.body.disabled).toBe(true);
      await row.getByRole('button', { name: 'Enable' }).click();
      await row.getByRole('button', { name: 'Disable' }).waitFor();
      const on = await node.admin<{ disabled: boolean }>('GET', '/v1/agents/other');
      expect(on.body.disabled).toBe(false);
    });

    it("revokes the agent's lease and the agent's next call fails", async () => {
      const jti = agent.claims.jti;
      await page.goto(`${node.adminUrl}/console/#agents`);
      await page.waitForSelector(`tr[data-lease="${jti}"]`);
      await shot('agents');
      await page.click(`tr[data-lease="${jti}"] button`);
      await page.waitForSelector(`tr[data-lease="${jti}"]`, { state: 'detached' });
      await expect(agent.fetch('echo', '/after-revoke')).rejects.toMatchObject({
        code: 'lease_revoked',
      });
    });

    it('pulls the kill switch: every lease is revoked', async () => {
      // Not `other`: disabling an agent revokes its leases issued up to the end of that
      // second (lease times are in seconds), and `other` was disabled a moment ago.
      const other = await node.enroll('demo-agent');
      try {
        // The lease works before the switch.
        expect((await other.fetch('echo', '/before-kill')).status).toBe(200);
        // A new document (the page may already be on #agents, where a hash change does nothing).
        await page.goto(`${node.adminUrl}/console/?kill-switch#agents`);
        await page.getByRole('button', { name: 'Revoke all leases' }).click();
        await page.getByText('Live leases (0)').waitFor();
        await expect(other.fetch('echo', '/after-kill')).rejects.toMatchObject({
          code: 'lease_revoked',
        });
      } finally {
        other.close();
      }
    });

    it('shows a broken chain', async () => {
      const db = new Database(join(node.dir, '.nexus', 'nexus.db'));
      try {
        const row = db.prepare('SELECT record FROM audit WHERE seq = 1').get() as {
          record: string;
        };
        db.exec('DROP TRIGGER audit_no_update');
        db.prepare('UPDATE audit SET record = ? WHERE seq = 1').run(
          row.record.replace(/"path":"[^"]*"/, '"path":"/tampered"'),
        );
      } finally {
        db.close();
      }
      await page.goto(`${node.adminUrl}/console/#audit`);
      await page.waitForSelector('#chain .bad');
      expect(await page.textContent('#chain .bad')).toBe('Chain BROKEN at seq 1: edited');
      await shot('audit-broken');
    });

    it('ran with no script error and no CSP violation, and sent no secret', () => {
      expect(errors).toEqual([]);
      expect(seen.length).toBeGreaterThan(20);
      for (const s of seen) {
        const text = s.body + JSON.stringify(s.headers);
        expect(text, s.url).not.toContain(SECRET);
        expect(text, s.url).not.toContain(SECRET2);
        expect(text, s.url).not.toContain(node.operatorToken);
        expect(text, s.url).not.toContain(agent.lease);
        expect(text, s.url).not.toMatch(/nxe_[A-Za-z0-9_-]{10}/);
        expect(text, s.url).not.toContain('held-body-never-shown');
      }
    });
  });
});
