/**
 * Issue 15, CLI polish through the real `nexus` binary: shell completion generated from the
 * commander tree (bash completion sourced in a real bash, as the shell calls it), lease ids
 * that start with `-` (with and without `--`), and `nexus reload` printing what changed
 * against the running configuration.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEXUS_BIN, runCli, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

/** Runs `bash -c SCRIPT` with $NEXUS set to the binary. */
function bash(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {
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

/** What bash completion offers for the words typed so far (the last one being completed). */
async function complete(...typed: string[]): Promise<string[]> {
  const words = ['nexus', ...typed].map((w) => `'${w}'`).join(' ');
  const r = await bash(
    `source <($NEXUS completion bash) && COMP_WORDS=(${words}) && ` +
      `COMP_CWORD=${typed.length} && _nexus_complete && printf '%s\\n' "\${COMPREPLY[@]}"`,
  );
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describe('shell completion (issue 15)', () => {
  it('completes `nexus lea` to `lease` in bash', async () => {
    expect(await complete('lea')).toEqual(['lease']);
  });

  it('completes subcommands and options at any depth, from the real command tree', async () => {
    expect(await complete('lease', '')).toEqual(expect.arrayContaining(['list', 'revoke']));
    expect(await complete('lease', 'revoke', '--a')).toEqual(['--agent', '--all']);
    expect(await complete('credential', 's')).toEqual(['set']);
    // Options before the command do not hide it; the value after --config is not a command.
    expect(await complete('service', '--json', 'pre')).toEqual(['presets']);
    expect(await complete('completion', '')).toEqual(['--help']);
  });

  it('prints zsh and fish scripts, and refuses another shell', async () => {
    const zsh = await runCli(['completion', 'zsh']);
    expect(zsh.code).toBe(0);
    expect(zsh.stdout.startsWith('#compdef nexus\n')).toBe(true);
    expect(zsh.stdout).toContain('complete -F _nexus_complete nexus');
    const fish = await runCli(['completion', 'fish']);
    expect(fish.code).toBe(0);
    expect(fish.stdout).toContain("complete -c nexus -n '__fish_use_subcommand' -a 'lease'");
    expect(fish.stdout).toContain(
      "complete -c nexus -n '__fish_seen_subcommand_from revoke' -l agent",
    );
    const other = await runCli(['completion', 'tcsh']);
    expect(other.code).not.toBe(0);
    expect(other.stdout).toBe('');
  });
});

describe('lease ids and reload against a running node (issue 15)', () => {
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'none' } },
        old: { upstream: upstream.url, auth: { type: 'none' } },
      },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], methods: ['GET'] } }],
    });
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('takes an id that starts with `-` as the lease id, with or without `--`', async () => {
    // `--config FILE` right after the command, before `--`, as a user would.
    const cli = (args: string[]) =>
      runCli([...args.slice(0, 2), '--config', node.configPath, ...args.slice(2)], {
        cwd: node.dir,
      });
    for (const args of [
      ['lease', 'revoke', '-Zz9dashLeadingId0000'],
      // `-V...` was --version (a program option read after the command): exit 0, the
      // version printed, nothing revoked (a lease id starts so one time in 4096).
      ['lease', 'revoke', '-VZ9dashLeadingId0003'],
      ['lease', 'revoke', '--', '-Zz9dashLeadingId0001'],
      // `-c...` would be `-c` (--config) with a value without `--`.
      ['lease', 'revoke', '--', '-cZ9dashLeadingId0002'],
    ]) {
      const r = await cli(args);
      // The id reached the admin API (an unknown lease: not_found), not the option parser.
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr).toContain('not_found');
      expect(r.stderr).not.toMatch(/unknown option|too many arguments/i);
    }
    const audit = await node.admin<{ records: { action?: string; path?: string }[] }>(
      'GET',
      '/v1/audit?kind=authority',
    );
    const paths = audit.body.records.filter((x) => x.action === 'lease.revoke').map((x) => x.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/v1/leases/-Zz9dashLeadingId0000/revoke',
        '/v1/leases/-Zz9dashLeadingId0001/revoke',
        '/v1/leases/-cZ9dashLeadingId0002/revoke',
        '/v1/leases/-VZ9dashLeadingId0003/revoke',
      ]),
    );
    // A real lease is revoked with `--` too.
    const agent = await node.enroll('bot');
    const { body } = await node.admin<{ leases: { id: string }[] }>('GET', '/v1/leases?agent=bot');
    const id = (body.leases[0] as { id: string }).id;
    const revoked = await cli(['lease', 'revoke', '--json', '--', id]);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toEqual({ revoked: 'lease', id });
    agent.close();
    // Seven CLI processes: slow on a loaded machine, not a timing check.
  }, 120_000);

  it('prints what a reload changed against the running config', async () => {
    const unchanged = await node.cli(['reload']);
    expect(unchanged.code).toBe(0);
    expect(unchanged.stdout).toContain('No change to services, agents, policies or limits.');

    const config = parse(await readFile(node.configPath, 'utf8')) as {
      services: Record<string, Record<string, unknown>>;
      agents: Record<string, unknown>;
      policies: unknown[];
    };
    config.services.added = { upstream: upstream.url, auth: { type: 'none' } };
    delete config.services.old;
    (config.services.echo as Record<string, unknown>).timeouts = { headers: '10s' };
    config.agents.helper = { roles: [] };
    config.policies.push({ id: 'write', allow: { roles: ['writer'], methods: ['POST'] } });
    await writeFile(node.configPath, stringify(config));

    const r = await node.cli(['reload']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('  services: + added  - old  ~ echo\n');
    expect(r.stdout).toContain('  agents: + helper\n');
    expect(r.stdout).toContain('  policies: + write\n');
    expect(r.stdout).not.toContain('limits:');

    const json = await node.cli(['reload', '--json']);
    expect(JSON.parse(json.stdout).changes).toEqual({
      services: { added: [], removed: [], changed: [] },
      agents: { added: [], removed: [], changed: [] },
      policies: { added: [], removed: [], changed: [] },
      limits: { added: [], removed: [], changed: [] },
    });
  });
});
