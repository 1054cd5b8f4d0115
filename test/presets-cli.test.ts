/**
 * Issue 5 item 8 through the real `nexus` binary: `service presets [--json]`, `service add`
 * (writes nexus.yaml, keeps the file, validates, prints the credential command), and the
 * "two commands, no agent change" promise: a running node, an already-enrolled agent,
 * `service add --preset` + `credential set` + restart, and the agent reaches the new service
 * with the credential injected and scrubbed from the response.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { runCli, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

describe('nexus service presets / service add (CLI)', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nexus-presets-'));
    const init = await runCli(['init', '--dir', dir]);
    expect(init.code).toBe(0);
    config = join(dir, 'nexus.yaml');
  });

  it('service presets --json prints an array with one object per preset', async () => {
    const r = await runCli(['service', 'presets', '--json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(Array.isArray(list)).toBe(true);
    expect(list.length).toBeGreaterThanOrEqual(30);
    expect(list.find((p) => p.id === 'github')).toMatchObject({
      upstream: 'https://api.github.com',
      mechanic: 'bearer',
      credential_fields: [{ name: 'value' }],
      docs: expect.stringMatching(/^https:\/\/docs\.github\.com\//) as unknown,
    });
    const human = await runCli(['service', 'presets']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^ID\s+NAME/);
    expect(human.stdout).toContain('microsoft-graph');
  });

  it('service add writes the entry, keeps the rest of the file, and names the credential command', async () => {
    const before = await readFile(config, 'utf8');
    const r = await runCli(
      ['service', 'add', 'pay', '--preset', 'twilio', '--credential', 'twilio-main'],
      { cwd: dir },
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('fields: account_sid, auth_token');
    expect(r.stdout).toContain(
      `echo '{"account_sid":"...","auth_token":"..."}' | nexus credential set twilio-main --format json`,
    );
    const after = await readFile(config, 'utf8');
    // Pure insertion: every original line (comments included) is still there, in order.
    const inserted = after.length - before.length;
    const at = after.indexOf('  pay:\n');
    expect(after.slice(0, at) + after.slice(at + inserted)).toBe(before);
    expect(parse(after).services.pay).toEqual({
      upstream: 'https://api.twilio.com',
      auth: {
        type: 'basic',
        credential: 'twilio-main',
        username_field: 'account_sid',
        password_field: 'auth_token',
      },
      hosts: ['api.twilio.com'],
    });
    const list = await runCli(['service', 'list', '--json', '--config', config]);
    expect(JSON.parse(list.stdout)).toContainEqual({
      name: 'pay',
      upstream: 'https://api.twilio.com',
      auth_type: 'basic',
      credential: 'twilio-main',
    });
  });

  it('service add --json, variables, and clean errors that leave the file alone', async () => {
    const ok = await runCli(
      [
        'service',
        'add',
        's3',
        '--preset',
        'aws',
        '--var',
        'service=s3',
        '--var',
        'region=eu-west-1',
        '--json',
      ],
      { cwd: dir },
    );
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      service: 's3',
      credential: 's3',
      entry: {
        upstream: 'https://s3.eu-west-1.amazonaws.com',
        auth: { type: 'aws_sigv4', region: 'eu-west-1', service: 's3', credential: 's3' },
      },
      credential_fields: ['access_key_id', 'secret_access_key', 'session_token'],
    });
    const before = await readFile(config, 'utf8');
    for (const args of [
      ['service', 'add', 's3', '--preset', 'aws', '--var', 'service=s3'], // exists
      ['service', 'add', 'x', '--preset', 'no-such-preset'],
      ['service', 'add', 'zd', '--preset', 'zendesk'], // needs --var subdomain
      ['service', 'add', 'Bad_Name', '--preset', 'github'], // invalid service name
      ['service', 'add', 'plain', '--preset', 'github', '--upstream', 'http://example.com'],
    ]) {
      const r = await runCli(args, { cwd: dir });
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr.trim().split('\n').length, args.join(' ')).toBeGreaterThanOrEqual(1);
      expect(r.stderr.startsWith('nexus: '), args.join(' ')).toBe(true);
    }
    expect(await readFile(config, 'utf8')).toBe(before);
  });
});

describe('onboarding a preset service: two commands, no agent change', () => {
  const TOKEN = 'ghp_presetE2Etoken0123456789abcdefABCDEF';
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: NexusAgent;

  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.handle((req, res) => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-oauth-scopes': 'repo, read:org',
        'github-authentication-token-expiration': '2030-01-01 00:00:00 UTC',
      });
      res.end(JSON.stringify({ url: req.url, authorization: req.headers.authorization }));
    });
    node = await startNode({
      agents: { bot: { roles: ['dev'] } },
      policies: [{ id: 'dev-reads', allow: { roles: ['dev'], methods: ['GET'] } }],
    });
    agent = await node.enroll('bot', { autoRenew: false });
  });

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await upstream?.close();
  });

  it('service add --preset github --upstream <loopback> + credential set -> the agent reaches it', async () => {
    const add = await node.cli([
      'service',
      'add',
      'github',
      '--preset',
      'github',
      '--upstream',
      upstream.url,
    ]);
    expect(add.code).toBe(0);
    const command = 'printf %s "$TOKEN" | nexus credential set github';
    expect(add.stdout).toContain(command);

    const set = await node.cli(['credential', 'set', 'github'], { stdin: TOKEN });
    expect(set.code).toBe(0);
    await node.restart();

    const res = await agent.fetch('github', '/repos/acme/app/issues', { intent: 'triage' });
    expect(res.status).toBe(200);
    // The preset's scrub rules apply: headers describing the token are removed.
    expect(res.headers.get('x-oauth-scopes')).toBeNull();
    expect(res.headers.get('github-authentication-token-expiration')).toBeNull();
    const body = (await res.json()) as { url: string; authorization: string };
    expect(body.url).toBe('/repos/acme/app/issues');
    expect(body.authorization).toBe('Bearer [REDACTED]');
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('the written config keeps the test config and validates with `policy check`', async () => {
    const text = await readFile(node.configPath, 'utf8');
    expect(parse(text).services.github.upstream).toBe(upstream.url);
    const check = await node.cli(['policy', 'check']);
    expect(check.code).toBe(0);
  });
});
