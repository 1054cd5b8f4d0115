/**
 * Issue 15, console login for people: a spawned `nexus up` whose console logs people in
 * with OIDC at a real OpenID Provider (`oidc-provider` on loopback), roles from the ID
 * token's `groups` claim. Over HTTP (a scripted browser: the cookie jar and the provider's
 * forms are all a browser adds here): a person without a role cannot log in, a flow is
 * bound to its browser and used once, a viewer reads but cannot revoke (403
 * `role_forbidden`, nothing changes), an operator revokes and the agent's next call fails,
 * and the audit chain names the person. In Chromium: the single sign-on link, the provider's
 * pages and the console showing who is logged in.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from './helpers/agents.js';
import { freePort, startNode, type TestNode } from './helpers/node.js';
import {
  CONSOLE_CLIENT,
  CookieBrowser,
  startPeopleIdp,
  type PeopleIdp,
} from './helpers/oidc-people.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const CHROMIUM = process.env.NEXUS_CHROMIUM ?? '/usr/bin/chromium';

interface Lease {
  id: string;
  agent: string;
}

interface AuthorityRecord {
  kind: string;
  action?: string;
  lease_id?: string;
  actor?: { type: string; name: string; id: string; role: string; issuer?: string };
}

describe('console OIDC login and roles (issue 15)', () => {
  let idp: PeopleIdp;
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;
  let browser: Browser | undefined;

  /** A console call as the page makes it: same origin, session cookie, CSRF token. */
  async function api(b: CookieBrowser, method: string, path: string) {
    const cookie = `nexus_console=${b.cookie('nexus_console') ?? ''}`;
    const s = await fetch(`${node.adminUrl}/console/session`, { headers: { cookie } });
    const session = s.ok ? ((await s.json()) as { csrf_token: string }) : undefined;
    const res = await fetch(`${node.adminUrl}/console/api${path}`, {
      method,
      headers: {
        cookie,
        origin: node.adminUrl,
        ...(session === undefined ? {} : { 'x-nexus-csrf': session.csrf_token }),
      },
    });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as unknown };
  }

  const leaseOfBot = async () => {
    const r = await node.admin<{ leases: Lease[] }>('GET', '/v1/leases?agent=bot');
    return (r.body.leases[0] as Lease).id;
  };

  const authorityRecords = async () =>
    (await node.admin<{ records: AuthorityRecord[] }>('GET', '/v1/audit?kind=authority')).body
      .records;

  beforeAll(async () => {
    idp = await startPeopleIdp();
    const adminPort = await freePort();
    const redirectUri = `http://127.0.0.1:${adminPort}/console/oidc/callback`;
    await idp.setup(
      redirectUri,
      {
        alice: ['staff', 'nexus-viewers'],
        bob: ['nexus-operators'],
        carol: ['staff'],
        dave: ['nexus-operators'],
        // Review: an operator whose provider lets her set any email, unverified.
        mallory: ['nexus-operators'],
      },
      { mallory: { email: 'dave@example.org', verified: false } },
    );
    upstream = await startUpstream();
    node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] }, waiter: { roles: ['reader'] } },
      policies: [
        { id: 'read', allow: { roles: ['reader'], services: ['echo'], methods: ['GET'] } },
        {
          id: 'held',
          approve: { roles: ['reader'], services: ['echo'], paths: ['/held/**'] },
          approvers: ['dave@example.org'],
          timeout: '1m',
        },
      ],
      overrides: {
        admin: {
          listen: `127.0.0.1:${adminPort}`,
          console: {
            oidc: {
              issuer: idp.issuer,
              client_id: CONSOLE_CLIENT.client_id,
              client_secret_credential: 'console-oidc',
              redirect_uri: redirectUri,
              scopes: ['openid', 'email', 'groups'],
              roles_claim: 'groups',
              roles: { viewer: ['nexus-viewers'], operator: ['nexus-operators'], admin: [] },
            },
          },
        },
      },
    });
    await node.setCredential('console-oidc', { client_secret: CONSOLE_CLIENT.client_secret });
    agent = await node.enroll('bot');
    expect((await agent.fetch('echo', '/before')).status).toBe(200);
  });

  afterAll(async () => {
    await browser?.close();
    agent?.close();
    await node?.stop();
    await upstream?.close();
    await idp?.close();
  });

  it('refuses a person whose groups map to no role', async () => {
    const b = new CookieBrowser();
    const r = await b.login(node.adminUrl, 'carol');
    expect(r.status).toBe(401);
    expect(new URL(r.url).pathname).toBe('/console/oidc/callback');
    expect(b.cookie('nexus_console')).toBeUndefined();
    // The refusal is a login page, without the provider's answer or any token in it.
    expect(r.body).toContain('no role in this console');
    expect(r.body).not.toContain(CONSOLE_CLIENT.client_secret);
  });

  it('binds a login to the browser that started it, once', async () => {
    // A callback no browser started (or from another browser: no flow cookie).
    const stray = await fetch(`${node.adminUrl}/console/oidc/callback?code=x&state=y`);
    expect(stray.status).toBe(401);
    expect(stray.headers.getSetCookie().some((c) => c.startsWith('nexus_console='))).toBe(false);

    const b = new CookieBrowser();
    const started = await b.go(`${node.adminUrl}/console/oidc/login`);
    expect(new URL(started.url).origin).toBe(idp.issuer); // at the provider's login page
    const flow = b.cookie('nexus_console_oidc') as string;
    expect(flow).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Finish this very flow: the provider sends the browser back with code and state.
    const action = /action="([^"]+)"/.exec(started.body)?.[1] as string;
    let r = await b.go(new URL(action, started.url).href, {
      method: 'POST',
      form: { login: 'alice' },
    });
    for (let i = 0; i < 3 && r.url.includes('/interaction/'); i++) {
      const next = /action="([^"]+)"/.exec(r.body)?.[1] as string;
      r = await b.go(new URL(next, r.url).href, { method: 'POST', form: {} });
    }
    expect(r.status).toBe(200);
    const callback = r.url;
    expect(new URL(callback).searchParams.get('state')).not.toBeNull();
    // The same code and state again, even with the flow cookie: used once.
    const replay = await fetch(callback, { headers: { cookie: `nexus_console_oidc=${flow}` } });
    expect(replay.status).toBe(401);
  });

  it('lets a viewer read but not revoke (403 role_forbidden, nothing changes)', async () => {
    const b = new CookieBrowser();
    const r = await b.login(node.adminUrl, 'alice');
    expect(r.status).toBe(200);
    const cookie = b.cookie('nexus_console') as string;
    const s = await fetch(`${node.adminUrl}/console/session`, {
      headers: { cookie: `nexus_console=${cookie}` },
    });
    expect(((await s.json()) as { user: unknown }).user).toEqual({
      type: 'person',
      name: 'alice@example.org',
      role: 'viewer',
    });
    const leases = await api(b, 'GET', '/v1/leases');
    expect(leases.status).toBe(200);
    const lease = await leaseOfBot();
    expect((leases.body as { leases: Lease[] }).leases.map((l) => l.id)).toContain(lease);
    expect((await api(b, 'GET', '/v1/audit')).status).toBe(200);

    for (const path of [
      `/v1/leases/${lease}/revoke`,
      '/v1/leases/revoke-all',
      '/v1/agents/bot/disable',
      '/v1/agents/bot/revoke-leases',
    ]) {
      const refused = await api(b, 'POST', path);
      expect(refused.status, path).toBe(403);
      expect((refused.body as { code: string }).code, path).toBe('role_forbidden');
    }
    // Nothing changed: the agent still calls, and no action was recorded.
    expect((await agent.fetch('echo', '/after-viewer')).status).toBe(200);
    expect((await authorityRecords()).filter((x) => x.actor?.name === 'alice@example.org')).toEqual(
      [],
    );
  });

  it("lets an operator revoke; the agent's next call fails and the audit names the person", async () => {
    const b = new CookieBrowser();
    expect((await b.login(node.adminUrl, 'bob')).status).toBe(200);
    const lease = await leaseOfBot();
    const r = await api(b, 'POST', `/v1/leases/${lease}/revoke`);
    expect(r.status).toBe(200);
    expect(await codeOf(agent.fetch('echo', '/after-revoke'))).toBe('lease_revoked');
    const record = (await authorityRecords()).find((x) => x.action === 'lease.revoke');
    expect(record).toMatchObject({
      kind: 'authority',
      lease_id: lease,
      actor: {
        type: 'person',
        name: 'bob@example.org',
        id: 'bob',
        role: 'operator',
        issuer: idp.issuer,
      },
    });
    // The chain with the new record still verifies.
    const verify = await node.admin<{ ok: boolean }>('GET', '/v1/audit/verify');
    expect(verify.body.ok).toBe(true);

    // Log out: the session and the person token behind it end.
    const cookie = `nexus_console=${b.cookie('nexus_console') as string}`;
    const s = (await (
      await fetch(`${node.adminUrl}/console/session`, { headers: { cookie } })
    ).json()) as { csrf_token: string };
    const out = await fetch(`${node.adminUrl}/console/logout`, {
      method: 'POST',
      headers: { cookie, origin: node.adminUrl, 'x-nexus-csrf': s.csrf_token },
    });
    expect(out.status).toBe(204);
    expect((await api(b, 'GET', '/v1/leases')).status).toBe(401);
  });

  it("review: an unverified email claim is not the person's: it neither names them nor matches a rule's approvers", async () => {
    const waiter = await node.enroll('waiter');
    try {
      const held = waiter.fetch('echo', '/held/deploy');
      const listed = async () =>
        (await node.admin<{ approvals: { id: string }[] }>('GET', '/v1/approvals')).body.approvals;
      while ((await listed()).length === 0) await new Promise((r) => setTimeout(r, 20));
      const id = ((await listed())[0] as { id: string }).id;

      const mallory = new CookieBrowser();
      expect((await mallory.login(node.adminUrl, 'mallory')).status).toBe(200);
      const session = await fetch(`${node.adminUrl}/console/session`, {
        headers: { cookie: `nexus_console=${mallory.cookie('nexus_console') ?? ''}` },
      });
      // Her display name is her sub, not the email she typed in.
      expect(((await session.json()) as { user: { name: string } }).user.name).toBe('mallory');
      const refused = await api(mallory, 'POST', `/v1/approvals/${id}/approve`);
      expect(refused).toMatchObject({ status: 403, body: { code: 'forbidden' } });
      expect(await listed()).toHaveLength(1);

      const dave = new CookieBrowser();
      expect((await dave.login(node.adminUrl, 'dave')).status).toBe(200);
      const ok = await api(dave, 'POST', `/v1/approvals/${id}/approve`);
      expect(ok).toMatchObject({
        status: 200,
        body: {
          state: 'approved',
          approver: { name: 'dave@example.org', token_id: 'person:dave' },
        },
      });
      expect((await held).status).toBe(200);
    } finally {
      waiter.close();
    }
  });

  it('keeps operator-token login, as admin, and records the token as the actor', async () => {
    const login = await fetch(`${node.adminUrl}/console/login`, {
      method: 'POST',
      headers: { origin: node.adminUrl, 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${encodeURIComponent(node.operatorToken)}`,
      redirect: 'manual',
    });
    expect(login.status).toBe(303);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const s = await fetch(`${node.adminUrl}/console/session`, { headers: { cookie } });
    expect(((await s.json()) as { user: { role: string } }).user.role).toBe('admin');
    expect((await node.admin('POST', '/v1/agents/bot/disable')).status).toBe(200);
    expect((await node.admin('POST', '/v1/agents/bot/enable')).status).toBe(200);
    const record = (await authorityRecords()).find((x) => x.action === 'agent.disable');
    expect(record?.actor).toMatchObject({ type: 'operator_token', role: 'admin' });
  });

  it('logs a person in through the single sign-on link in Chromium', async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${node.adminUrl}/console/`);
    await page.click('a.sso');
    await page.waitForSelector('#login');
    expect(new URL(page.url()).origin).toBe(idp.issuer);
    await page.fill('#login', 'bob');
    await page.click('#signin');
    await page.waitForSelector('#allow');
    await page.click('#allow');
    await page.waitForSelector('#user:not(:empty)');
    expect(new URL(page.url()).pathname).toBe('/console/');
    expect(await page.textContent('#user')).toBe('bob@example.org (operator)');
    const c = (await page.context().cookies()).find((x) => x.name === 'nexus_console');
    expect(c?.httpOnly).toBe(true);
    expect(c?.sameSite).toBe('Strict');
    // An operator's page offers revoking, not adding a service (admin).
    await page.waitForSelector('tr[data-agent="bot"]');
    expect(await page.isDisabled('tr[data-agent="bot"] button:has-text("Disable")')).toBe(false);
    await page.goto(`${node.adminUrl}/console/#services`);
    await page.waitForSelector('#add-service');
    expect(await page.isDisabled('#add-service button[type=submit]')).toBe(true);
    expect(errors).toEqual([]);
  });
});
