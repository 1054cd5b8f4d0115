/**
 * Issue 15, the console's Limits and Services pages: a spawned `nexus up` with a rate limit,
 * the real SDK as the agent and Debian's Chromium (playwright-core). The Limits page lists
 * the configured limits and the agent's live counter, which moves while the page is open;
 * the call over the limit is refused `rate_limited`. On the Services page an operator adds
 * a service from a preset: it is written into nexus.yaml, the node reloads, the agent can
 * call it once its credential is set, and no credential value reaches the browser.
 *
 * NEXUS_CONSOLE_SCREENSHOTS=1 (`npm run console:screenshots`) writes docs/console/limits.png
 * and docs/console/services-preset.png.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from './helpers/agents.js';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const CHROMIUM = process.env.NEXUS_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.NEXUS_CONSOLE_SCREENSHOTS === '1';

const SECRET = 'ghp_consolePresetSecret0123456789abcdef';

describe('the console limits and services pages', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;
  let browser: Browser | undefined;
  let page: Page;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] }, idle: { roles: ['reader'] } },
      policies: [
        // Any service: the one added from a preset is allowed too.
        { id: 'read', allow: { roles: ['reader'], methods: ['GET'] } },
      ],
      overrides: {
        limits: [
          {
            id: 'reader-rate',
            description: 'readers: three calls an hour, two at once',
            match: { roles: ['reader'] },
            per: 'agent',
            requests: { max: 3, window: '1h' },
            concurrent: 2,
          },
          {
            id: 'echo-volume',
            match: { services: ['echo'] },
            per: 'service',
            bytes: { max: '1MiB', window: '1d' },
          },
        ],
      },
    });
    agent = await node.enroll('bot');
    if (!existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
    page.on('response', async (res) => {
      const body = await res.text().catch(() => '');
      if (body.includes(SECRET)) leaked.push(res.url());
    });
  });

  /** Console answers that held the credential value (must stay empty). */
  const leaked: string[] = [];

  const shot = async (name: string) => {
    if (!SHOTS) return;
    await mkdir(join(REPO, 'docs/console'), { recursive: true });
    await page.screenshot({ path: join(REPO, 'docs/console', `${name}.png`), fullPage: true });
  };

  afterAll(async () => {
    await browser?.close();
    agent?.close();
    await node?.stop();
    await upstream?.close();
  });

  it('lists the configured limits and the live counters as they move', async () => {
    expect((await agent.fetch('echo', '/one')).status).toBe(200);
    await page.goto(`${node.adminUrl}/console/login`);
    await page.fill('#token', node.operatorToken);
    await page.click('button[type=submit]');
    await page.waitForSelector('tr[data-agent="bot"]');
    await page.goto(`${node.adminUrl}/console/#limits`);
    const row = page.locator('tr[data-limit="reader-rate"]');
    await row.waitFor();
    expect(await row.textContent()).toContain('3 requests / 3600s, 2 in flight');
    expect(await row.textContent()).toContain('roles reader');
    const bot = row.locator('[data-subject="agent:bot"]');
    expect(await bot.textContent()).toBe('agent:bot: 1/3 requests, 0/2 in flight');
    // An agent that made no call has no counter.
    expect(await row.locator('[data-subject="agent:idle"]').count()).toBe(0);

    // Two more calls while the page is open: the counter reaches the cap by itself.
    expect((await agent.fetch('echo', '/two')).status).toBe(200);
    expect((await agent.fetch('echo', '/three')).status).toBe(200);
    await page.waitForSelector('tr[data-limit="reader-rate"] [data-subject="agent:bot"].bad');
    expect(await bot.textContent()).toBe('agent:bot: 3/3 requests, 0/2 in flight');
    const volume = page.locator('tr[data-limit="echo-volume"] [data-subject="service:echo"]');
    expect(await volume.textContent()).toMatch(/^service:echo: \d+\/1048576 bytes$/);
    await shot('limits');
    // The fourth is over the limit.
    expect(await codeOf(agent.fetch('echo', '/four'))).toBe('rate_limited');
  });

  it('adds a service from a preset; credential health goes from not set to set', async () => {
    await page.goto(`${node.adminUrl}/console/#services`);
    await page.waitForSelector('#add-service');
    await page.selectOption('#add-service select[name=preset]', 'github');
    await page.fill('#add-service input[name=name]', 'gh');
    await page.fill('#add-service input[name=credential]', 'gh-token');
    await page.fill('#add-service input[name=upstream]', upstream.url);
    await page.click('#add-service button[type=submit]');
    const row = page.locator('tr[data-service="gh"]');
    await row.waitFor();
    expect(await row.textContent()).toContain('not set');
    expect(await page.textContent('#status')).toContain('Added service gh (github)');
    // Written into nexus.yaml (the rest of the file kept) and live at once.
    const yaml = await readFile(node.configPath, 'utf8');
    expect(yaml).toMatch(/\n {2}gh:\n/);
    expect(yaml).toContain('credential: gh-token');
    // (Another agent: bot used up its calls on the limits page.)
    const idle = await node.enroll('idle');
    expect(await codeOf(idle.fetch('gh', '/user'))).toBe('credential_unavailable');
    // The operator token's action is in the audit chain.
    const audit = await node.admin<{ records: { action?: string; service?: string }[] }>(
      'GET',
      '/v1/audit?kind=authority',
    );
    expect(audit.body.records.some((r) => r.action === 'service.add')).toBe(true);

    // The credential is set apart (never through the console); the page shows its health.
    await node.setCredential('gh-token', { value: SECRET });
    await page.reload();
    await row.waitFor();
    expect(await row.textContent()).toContain('set (v1; fields value)');
    await shot('services-preset');
    expect((await idle.fetch('gh', '/user')).status).toBe(200);
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`);
    idle.close();
    // An existing name is refused (conflict), and the file is unchanged.
    await page.fill('#add-service input[name=name]', 'gh');
    await page.click('#add-service button[type=submit]');
    await expect.poll(() => page.textContent('#status')).toContain('conflict');
    expect(await readFile(node.configPath, 'utf8')).toBe(yaml);
    expect(leaked).toEqual([]);
  });
});
