/**
 * Issue 15, the console's Limits page: a spawned `nexus up` with a rate limit, the real SDK
 * as the agent and Debian's Chromium (playwright-core). The page lists the configured
 * limit and the agent's live counter, which moves while the page is open; the call over
 * the limit is refused `rate_limited`. A viewer (any role) reads it through the same admin
 * route, `GET /v1/limits`.
 *
 * NEXUS_CONSOLE_SCREENSHOTS=1 (`npm run console:screenshots`) writes docs/console/limits.png.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus/sdk';
import { codeOf } from './helpers/agents.js';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const CHROMIUM = process.env.NEXUS_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.NEXUS_CONSOLE_SCREENSHOTS === '1';

describe('the console limits page', () => {
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
        { id: 'read', allow: { roles: ['reader'], services: ['echo'], methods: ['GET'] } },
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
  });

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
    if (SHOTS) {
      await mkdir(join(REPO, 'docs/console'), { recursive: true });
      await page.screenshot({ path: join(REPO, 'docs/console/limits.png'), fullPage: true });
    }
    // The fourth is over the limit.
    expect(await codeOf(agent.fetch('echo', '/four'))).toBe('rate_limited');
  });
});
