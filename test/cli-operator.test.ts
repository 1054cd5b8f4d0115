/**
 * Issue 15, CLI polish, through the real `nexus` binary: NEXUS_CONFIG and NEXUS_ADDR, no
 * EPIPE stack trace when the reader goes away, `--version` without loading the server,
 * `--json` with snake_case keys, `init --listen/--port`, and an address-in-use error that
 * names the setting to change.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEXUS_BIN, REPO, freePort, runCli, startNode, type TestNode } from './helpers/node.js';

/** Runs `sh -c SCRIPT` with $NEXUS set to the binary; resolves with its exit code and output. */
function shell(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], {
      env: { ...process.env, NEXUS: `${process.execPath} ${NEXUS_BIN}` },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const tempDir = () => mkdtemp(join(tmpdir(), 'nexus-cli-'));

describe('nexus CLI for operators (issue 15)', () => {
  it('answers --version with the package version', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'packages/cli/package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${pkg.version}\n`);
    }
  });

  it('stops quietly when the reader of its output goes away (EPIPE)', async () => {
    // `true` exits at once: every write of the CLI meets a closed pipe.
    const closed = await shell('$NEXUS service presets | true; echo "status=$?" >&2');
    expect(closed.stderr).not.toMatch(/EPIPE|Error|at /);
    const head = await shell('$NEXUS service presets --json | head -n 1');
    expect(head.stdout).toBe('[\n');
    expect(head.stderr).toBe('');
  });

  it('init --port and --listen write the listen addresses; bad ones are refused', async () => {
    const dir = await tempDir();
    const r = await runCli(['init', '--dir', dir, '--port', '9170', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    expect(out).toMatchObject({ proxy_listen: '127.0.0.1:9170', admin_listen: '127.0.0.1:9171' });
    expect(out.operator_token).toMatch(/^nxo_/);
    const yaml = parse(await readFile(join(dir, 'nexus.yaml'), 'utf8')) as {
      proxy: { listen: string };
      admin: { listen: string };
    };
    expect(yaml.proxy.listen).toBe('127.0.0.1:9170');
    expect(yaml.admin.listen).toBe('127.0.0.1:9171');

    const dir2 = await tempDir();
    const r2 = await runCli([
      'init',
      '--dir',
      dir2,
      '--listen',
      '127.0.0.1:8800',
      '--admin-listen',
      '127.0.0.1:8900',
    ]);
    expect(r2.code).toBe(0);
    expect(await readFile(join(dir2, 'nexus.yaml'), 'utf8')).toContain('listen: "127.0.0.1:8900"');

    for (const bad of [
      ['--port', '70000'],
      ['--listen', 'nowhere'],
      ['--listen', '127.0.0.1:7000', '--port', '7000'],
    ]) {
      const e = await runCli(['init', '--dir', await tempDir(), ...bad]);
      expect(e.code, bad.join(' ')).toBe(1);
      expect(e.stderr).toMatch(/^nexus: .*(--port|--listen)/);
    }
  });

  it('reads NEXUS_CONFIG, and prints policy explain --json in snake_case', async () => {
    const dir = await tempDir();
    expect((await runCli(['init', '--dir', dir])).code).toBe(0);
    const elsewhere = await tempDir();
    const env = { NEXUS_CONFIG: join(dir, 'nexus.yaml') };
    const check = await runCli(['policy', 'check', '--json'], { cwd: elsewhere, env });
    expect(check.code).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({ ok: true });
    // The generated config allows demo-agent GET on echo.
    const explain = await runCli(
      ['policy', 'explain', '--agent', 'demo-agent', '--service', 'echo', '--path', '/x', '--json'],
      { cwd: elsewhere, env },
    );
    const result = JSON.parse(explain.stdout) as Record<string, unknown>;
    expect(result.decision).toBe('allow');
    expect(result.rule_ids).toEqual(expect.any(Array));
    expect(result).not.toHaveProperty('ruleIds');
    // Without it (and without ./nexus.yaml), the command says what is missing.
    const none = await runCli(['policy', 'check'], { cwd: elsewhere });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no config at nexus\.yaml/);
  });

  it('says which setting to change when a listen address is in use', async () => {
    const dir = await tempDir();
    const port = await freePort();
    expect((await runCli(['init', '--dir', dir, '--port', String(port)])).code).toBe(0);
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    try {
      const up = await runCli(['up', '--config', join(dir, 'nexus.yaml')], { timeoutMs: 20_000 });
      expect(up.code).toBe(1);
      expect(up.stderr).toContain(`127.0.0.1:${port} (proxy.listen)`);
      expect(up.stderr).toContain('(address_in_use)');
      expect(up.stderr).not.toMatch(/^\s+at /m);
    } finally {
      squatter.close();
    }
  });

  describe('against a running node', () => {
    let node: TestNode;
    let elsewhere: string;
    beforeAll(async () => {
      node = await startNode({
        agents: { bot: { roles: ['reader'] } },
        services: {
          good: {
            upstream: 'http://127.0.0.1:9',
            auth: { type: 'bearer', credential: 'good-key' },
          },
          bad: { upstream: 'http://127.0.0.1:9', auth: { type: 'bearer', credential: 'bad-key' } },
          open: { upstream: 'http://127.0.0.1:9', auth: { type: 'none' } },
        },
      });
      await node.setCredential('good-key', { value: 'status-e2e-secret-value-123' });
      elsewhere = await tempDir();
    });
    afterAll(async () => {
      await node?.stop();
    });

    it('nexus status shows the node, leases, credential health and the audit head', async () => {
      const bot = await node.enroll('bot');
      // A proxied request leaves audit records (nothing listens on the upstream port).
      await bot.fetch('open', '/x').catch(() => undefined);
      const r = await node.cli(['status', '--json']);
      expect(r.code).toBe(0);
      const s = JSON.parse(r.stdout) as {
        node: Record<string, unknown>;
        agents: { total: number };
        leases: { active: number };
        audit: { head_seq: number; pending_records: number };
        services: { name: string }[];
      };
      expect(s.node).toMatchObject({
        proxy_url: node.proxyUrl,
        admin_url: node.adminUrl,
        store: 'sqlite',
        policy_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      });
      expect(s.agents.total).toBeGreaterThanOrEqual(1);
      expect(s.leases.active).toBeGreaterThanOrEqual(1);
      expect(s.audit.head_seq).toBeGreaterThan(0);
      expect(s.audit.pending_records).toBe(0);
      const byName = Object.fromEntries(s.services.map((v) => [v.name, v])) as Record<
        string,
        Record<string, unknown>
      >;
      expect(byName.good).toMatchObject({ credential_status: 'set', credential_version: 1 });
      expect(byName.bad).toMatchObject({ credential_status: 'missing', credential_version: null });
      expect(byName.open).toMatchObject({ credential_status: 'none', credential: null });
      expect(r.stdout).not.toContain('status-e2e-secret-value-123');

      const human = await node.cli(['status']);
      expect(human.code).toBe(0);
      expect(human.stdout).toContain(`proxy ${node.proxyUrl}`);
      expect(human.stdout).toContain(
        'credential "bad-key" of bad is not set: nexus credential set bad-key',
      );
    });

    it('needs no config file with NEXUS_ADDR and NEXUS_OPERATOR_TOKEN', async () => {
      const env = { NEXUS_ADDR: node.adminUrl, NEXUS_OPERATOR_TOKEN: node.operatorToken };
      const list = await runCli(['agent', 'list', '--json'], { cwd: elsewhere, env });
      expect(list.code).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ name: 'bot', roles: ['reader'], disabled: false }),
        ]),
      );
      // host:port works too.
      const bare = { ...env, NEXUS_ADDR: node.adminUrl.replace('http://', '') };
      const add = await runCli(['agent', 'add', 'helper', '--role', 'reader', '--json'], {
        cwd: elsewhere,
        env: bare,
      });
      expect(add.code).toBe(0);
      expect(JSON.parse(add.stdout)).toMatchObject({
        name: 'helper',
        created_at: expect.any(String),
      });
      const revoke = await runCli(['lease', 'revoke', '--agent', 'helper', '--json'], {
        cwd: elsewhere,
        env,
      });
      expect(JSON.parse(revoke.stdout)).toEqual({ revoked: 'agent', agent: 'helper' });
      const disable = await runCli(['agent', 'disable', 'helper', '--json'], {
        cwd: elsewhere,
        env,
      });
      expect(JSON.parse(disable.stdout)).toMatchObject({ name: 'helper', disabled: true });

      const bad = await runCli(['agent', 'list'], {
        cwd: elsewhere,
        env: { ...env, NEXUS_ADDR: 'ftp://x' },
      });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^nexus: NEXUS_ADDR must be/);
    });
  });
});
