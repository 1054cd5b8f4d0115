/**
 * Issue 10, the agent host: the command `nexus run` starts is hostile and tries to become
 * the operator (read the operator token, the master key or the store; read its parent's
 * environment; borrow the sidecar to reach the Authority's routes). `nexus run` works with
 * agent rights only, the child finds nothing it can use, `--sandbox` hides the node for
 * real, and `nexus up` refuses key files other users can read. Against a real `nexus up`,
 * the real CLI and a loopback upstream.
 *
 * Tests run as root here, and root reads any file whatever its mode: file modes are tested
 * by their bits, isolation by the sandbox.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAgentKey } from '@nexus-proxy/protocol';
import { enroll } from '@nexus-proxy/sdk';
import { codeOf } from '../helpers/agents.js';
import { runCli, startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { enrollAttacker, leaks, send, signFor } from './harness.js';

const SECRET = 'agent-host-upstream-secret-0123456789abcdef';

// bwrap is installed by .ci/run; a developer machine without it skips the sandbox tests,
// CI never does.
const HAS_BWRAP = spawnSync('sh', ['-c', 'command -v bwrap'], { stdio: 'ignore' }).status === 0;
const SANDBOX_TESTS = HAS_BWRAP || process.env.CI === 'true';

/** A script that tries everything a hostile child would, from the node's directory. */
function stealScript(nodeDir: string): string {
  const n = join(nodeDir, '.nexus');
  return [
    `echo "master:$(cat ${n}/master.key 2>&1)"`,
    `echo "operator:$(cat ${n}/operator.token 2>&1)"`,
    `echo "store:$(head -c 15 ${n}/nexus.db 2>&1)"`,
    `echo "listing:$(ls -A ${n} 2>&1 | tr '\\n' ' ')"`,
    // Changing the node's config (a policy, an upstream) would apply at its next reload.
    `(echo "# tampered" >> ${join(nodeDir, 'nexus.yaml')}) 2>/dev/null && echo "wrote-config"`,
    // Every process this child can see: its parent's environment above all.
    `for p in /proc/[0-9]*; do tr '\\0' '\\n' < "$p/environ" 2>/dev/null; done`,
    'echo "proxy:$(curl -s "$NEXUS_PROXY/echo/from-child")"',
  ].join('\n');
}

async function leasesOf(node: TestNode, agent: string) {
  const r = await node.admin<{ leases: { id: string; revoked: boolean }[] }>(
    'GET',
    `/v1/leases?agent=${agent}&all=true&limit=1000`,
  );
  return r.body.leases;
}

async function enrollStatus(node: TestNode, token: string): Promise<number> {
  const { publicJwk } = await generateAgentKey('ed25519');
  const res = await fetch(`${node.proxyUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollment_token: token, jwk: publicJwk }),
  });
  await res.body?.cancel();
  return res.status;
}

// Each test starts the CLI several times (`agent enroll`, then `nexus run` and its child,
// under bubblewrap for --sandbox: 8 CLI processes in the sandbox test), ~0.6 s each on an
// idle machine and several times that on a loaded CI machine: 30 s per test is too tight.
describe('the agent host (issue 10)', { timeout: 120_000 }, () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let masterKey: string;
  const tokens: string[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
      },
      agents: { bot: { roles: ['reader'] }, other: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }],
    });
    await node.setCredential('echo-token', { value: SECRET });
    const keyFile = await readFile(join(node.dir, '.nexus', 'master.key'), 'utf8');
    masterKey = /^v1:(\S+)$/m.exec(keyFile)?.[1] ?? '';
    expect(masterKey.length).toBeGreaterThan(40);
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('nexus run needs agent rights only (a token and the Authority URL) and revokes its own lease at exit', async () => {
    upstream.reset();
    // Were `nexus run` to call the admin API, it would find this trap, not the node.
    const trap = await startUpstream();
    try {
      const before = await leasesOf(node, 'bot');
      const r = await node.runAgent(
        'bot',
        ['sh', '-c', 'curl -s -o /dev/null -w "%{http_code}" "$NEXUS_PROXY/echo/hello"'],
        {
          env: { NEXUS_ADDR: trap.url, NEXUS_ADMIN_URL: trap.url, NEXUS_OPERATOR_TOKEN: undefined },
        },
      );
      tokens.push(r.token);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('200');
      expect(r.stderr).toBe('');
      expect(upstream.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
      expect(trap.requests).toHaveLength(0);
      const fresh = (await leasesOf(node, 'bot')).filter((l) => !before.some((b) => b.id === l.id));
      expect(fresh).toHaveLength(1);
      expect(fresh[0]?.revoked).toBe(true);
    } finally {
      await trap.close();
    }
  });

  it("the child finds nothing it can use in its environment or its parent's (the token is spent)", async () => {
    const r = await node.runAgent('bot', [
      'sh',
      '-c',
      'env; echo ---parent---; tr "\\0" "\\n" < /proc/$PPID/environ',
    ]);
    tokens.push(r.token);
    expect(r.code).toBe(0);
    const [own, parent] = r.stdout.split('---parent---');
    expect(own?.match(/^NEXUS_[A-Z_]*/gm)).toEqual(['NEXUS_PROXY']);
    // The parent's environment does hold the enrollment token: the child read it...
    expect(parent).toContain(`NEXUS_ENROLLMENT_TOKEN=${r.token}`);
    // ...and it is worth nothing: it was spent before the child started.
    expect(await enrollStatus(node, r.token)).toBe(401);
    expect(r.stdout).not.toContain(node.operatorToken);
    expect(r.stdout).not.toContain(masterKey);
  });

  it('nexus run warns when the command could read the node key files or operator secrets', async () => {
    const script = ['sh', '-c', 'env | grep -c "^NEXUS_" || true'];
    // The quickstart's mistake: the agent runs as the node's user, in its directory, in a
    // shell that holds the operator's secrets.
    const exposed = await node.runAgent('bot', script, {
      cwd: node.dir,
      env: { NEXUS_OPERATOR_TOKEN: node.operatorToken, NEXUS_MASTER_KEY: masterKey },
    });
    tokens.push(exposed.token);
    expect(exposed.code).toBe(0);
    expect(exposed.stderr).toContain('(node_files_readable)');
    expect(exposed.stderr).toContain('(operator_secret_in_env)');
    expect(exposed.stdout.trim()).toBe('1'); // NEXUS_PROXY only
    expect(exposed.stderr).not.toContain(node.operatorToken);
    expect(exposed.stderr).not.toContain(masterKey);

    // Given the node's config from elsewhere, it finds the node's files through it.
    const viaConfig = await node.runAgent('bot', script, { args: ['--config', node.configPath] });
    tokens.push(viaConfig.token);
    expect(viaConfig.stderr).toContain('(node_files_readable)');
    expect(viaConfig.stderr).not.toContain('(operator_secret_in_env)');

    // An agent host of its own: nothing to warn about.
    const clean = await node.runAgent('bot', script);
    tokens.push(clean.token);
    expect(clean.code).toBe(0);
    expect(clean.stderr).toBe('');
  });

  it.skipIf(!SANDBOX_TESTS)(
    '--sandbox: the command cannot read the master key, operator token, store or any parent environment, and still reaches $NEXUS_PROXY',
    async () => {
      const env = { NEXUS_OPERATOR_TOKEN: node.operatorToken, NEXUS_MASTER_KEY: masterKey };
      // Control: the same script without the sandbox takes everything (same user).
      const open = await node.runAgent('bot', ['sh', '-c', stealScript(node.dir)], {
        cwd: node.dir,
        env,
      });
      tokens.push(open.token);
      expect(open.stdout).toContain(node.operatorToken);
      expect(open.stdout).toContain(masterKey);
      expect(open.stdout).toContain('store:SQLite format 3');
      expect(open.stdout).toContain('wrote-config');
      await writeFile(
        node.configPath,
        (await readFile(node.configPath, 'utf8')).replace('# tampered\n', ''),
      );

      for (const how of [
        { cwd: node.dir, args: ['--sandbox'] },
        { args: ['--sandbox', '--config', node.configPath] },
        // Issue 10 review: from another directory, with nothing telling where the node is.
        { args: ['--sandbox'] },
      ]) {
        upstream.reset();
        const r = await node.runAgent('bot', ['sh', '-c', stealScript(node.dir)], {
          ...how,
          env,
        });
        tokens.push(r.token);
        expect(r.code, r.stderr).toBe(0);
        // An empty tmpfs over .nexus, or no node directory at all.
        expect(r.stdout).toMatch(/listing:(\n| ?ls: .*No such file)/);
        expect(r.stdout).not.toContain('wrote-config');
        expect(r.stdout).not.toContain(node.operatorToken);
        expect(r.stdout).not.toContain(masterKey);
        expect(r.stdout).not.toContain('SQLite format 3');
        expect(r.stdout).not.toContain('NEXUS_OPERATOR_TOKEN');
        expect(r.stdout).not.toContain('NEXUS_MASTER_KEY');
        expect(r.stdout).not.toContain(r.token);
        // The sidecar is still reachable on loopback, and still injects and scrubs.
        expect(r.stdout).toContain('"url":"/from-child"');
        expect(r.stdout).toContain('[REDACTED]');
        expect(upstream.requests.map((q) => q.headers.authorization)).toEqual([`Bearer ${SECRET}`]);
        expect(leaks(r.stdout, [SECRET])).toEqual([]);
        expect(r.stderr).toBe('');
      }
    },
  );

  it('--sandbox without bubblewrap fails clearly, before the token is spent', async () => {
    const token = await node.enrollmentToken('bot');
    tokens.push(token);
    const emptyPath = await mkdtemp(join(tmpdir(), 'nexus-nobwrap-'));
    const r = await runCli(['run', '--sandbox', '--authority', node.proxyUrl, '--', 'true'], {
      cwd: emptyPath,
      env: { PATH: emptyPath, NEXUS_ENROLLMENT_TOKEN: token },
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('(sandbox_unavailable)');
    expect(await enrollStatus(node, token)).toBe(201);
  });

  it('nexus agent enroll prints only the token, or writes a 0600 enrollment file nexus run uses', async () => {
    const printed = await node.cli(['agent', 'enroll', 'bot']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^nxe_[A-Za-z0-9_-]+\n$/);
    tokens.push(printed.stdout.trim());

    const dir = await mkdtemp(join(tmpdir(), 'nexus-agent-'));
    const file = join(dir, 'bot.enroll');
    const written = await node.cli(['agent', 'enroll', 'bot', '-o', file]);
    expect(written.code).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const content = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
    expect(content).toMatchObject({ agent: 'bot', authority: node.proxyUrl });
    tokens.push(content.enrollment_token ?? '');
    expect(written.stdout + written.stderr).not.toContain(content.enrollment_token);

    upstream.reset();
    const r = await runCli(
      ['run', '--enrollment-file', file, '--', 'sh', '-c', 'curl -s "$NEXUS_PROXY/echo/by-file"'],
      { cwd: dir },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(upstream.requests.map((q) => q.url)).toEqual(['/by-file']);
  });

  it('a token minted before `agent disable` does not work after `agent enable`', async () => {
    const before = await node.enrollmentToken('other');
    tokens.push(before);
    expect((await node.cli(['agent', 'disable', 'other'])).code).toBe(0);
    expect((await node.cli(['agent', 'enable', 'other'])).code).toBe(0);
    const { publicJwk } = await generateAgentKey('ed25519');
    const res = await fetch(`${node.proxyUrl}/v1/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enrollment_token: before, jwk: publicJwk }),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('enrollment_invalid');
    // A token made after the enable works.
    const after = await node.enrollmentToken('other');
    tokens.push(after);
    expect(await enrollStatus(node, after)).toBe(201);
  });

  it('the sidecar refuses every spelling of a path out of its service, before signing', async () => {
    upstream.reset();
    const spellings: [string, string][] = [
      ['/../v1/leases/renew', 'service_unknown'],
      ['/%2e%2e/v1/leases/renew', 'service_unknown'],
      ['/.%2E/v1/leases/renew', 'service_unknown'],
      ['/./v1/leases/renew', 'service_unknown'],
      ['/v1/leases/renew', 'service_unknown'],
      ['/.well-known/jwks.json', 'service_unknown'],
      ['/ECHO/x', 'service_unknown'],
      ['/echo/../v1/leases/renew', 'path_invalid'],
      ['/echo/%2e%2e/v1/leases/renew', 'path_invalid'],
      ['/echo/a/%2E%2E/%2E%2E/v1/leases/renew', 'path_invalid'],
      ['/echo/.%2e/.%2e/v1/leases/revoke', 'path_invalid'],
      ['/echo/..;/v1/leases/renew', 'path_invalid'],
      ['/echo/..%2fv1/leases/renew', 'path_invalid'],
      ['/echo/..\\v1\\leases\\renew', 'path_invalid'],
      ['/echo//v1/leases/renew', 'path_invalid'],
    ];
    const before = await leasesOf(node, 'bot');
    const script = spellings
      .map(([p]) => `curl -s --path-as-is -X POST "$NEXUS_PROXY"'${p}'; echo`)
      .join('\n');
    const r = await node.runAgent('bot', ['sh', '-c', script]);
    tokens.push(r.token);
    expect(r.code).toBe(0);
    const codes = r.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { code?: string }).code);
    expect(codes).toEqual(spellings.map(([, c]) => c));
    expect(r.stdout).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    expect(upstream.requests).toHaveLength(0);
    // Only the run's own lease: no renewal (nor anything else) reached the Authority.
    const fresh = (await leasesOf(node, 'bot')).filter((l) => !before.some((b) => b.id === l.id));
    expect(fresh).toHaveLength(1);
  });

  it('agent.fetch refuses a service or path that could escape, before signing anything', async () => {
    const sent: string[] = [];
    const agent = await enroll({
      authority: node.proxyUrl,
      enrollmentToken: await node.enrollmentToken('bot'),
      autoRenew: false,
      fetch: (input, init) => {
        sent.push(String(input));
        return fetch(input, init);
      },
    });
    sent.length = 0;
    try {
      for (const [service, path, code] of [
        ['..', '/v1/leases/renew', 'service_unknown'],
        ['v1', '/leases/renew', 'service_unknown'],
        ['.well-known', '/jwks.json', 'service_unknown'],
        ['echo/..', '/v1/leases/renew', 'service_unknown'],
        ['Echo', '/x', 'service_unknown'],
        ['echo', '/../v1/leases/renew', 'path_invalid'],
        ['echo', '/%2e%2e/v1/leases/renew', 'path_invalid'],
        ['echo', '/.%2E/.%2E/v1/leases/revoke', 'path_invalid'],
        ['echo', '/a\\..\\..\\v1', 'path_invalid'],
        ['echo', '//evil.example/x', 'path_invalid'],
        ['echo', '/x?a=\n', 'request_invalid'],
      ] as const) {
        expect(await codeOf(agent.fetch(service, path)), `${service} ${path}`).toBe(code);
      }
      expect(sent).toEqual([]);
      // Control: a valid target is signed and sent.
      expect((await agent.fetch('echo', '/fine?x=..')).status).toBe(200);
      expect(sent).toEqual([`${node.proxyUrl}/echo/fine?x=..`]);
    } finally {
      await agent.revoke();
    }
    // revoke() is signed and idempotent: a second call finds the lease revoked, and is done.
    await agent.revoke();
    expect(sent.slice(1)).toEqual([
      `${node.proxyUrl}/v1/leases/revoke`,
      `${node.proxyUrl}/v1/leases/revoke`,
    ]);
    const lease = (await leasesOf(node, 'bot')).find((l) => l.id === agent.claims.jti);
    expect(lease?.revoked).toBe(true);
  });

  it('self-revocation needs the lease key: a borrowed lease cannot end it, its holder can', async () => {
    const victim = await enrollAttacker(node, 'bot');
    const thief = await enrollAttacker(node, 'other');
    const target = '/v1/leases/revoke';
    const borrowed = await send(node.proxyUrl, target, {
      method: 'POST',
      headers: await signFor(node, thief, target, { method: 'POST', lease: victim.lease }),
    });
    expect(borrowed.status).toBe(401);
    expect(borrowed.code).toBe('signature_invalid');
    const unsigned = await send(node.proxyUrl, target, { method: 'POST' });
    expect(unsigned.code).toBe('lease_missing');
    const alive = await send(node.proxyUrl, '/echo/still-alive', {
      headers: await signFor(node, victim, '/echo/still-alive'),
    });
    expect(alive.status).toBe(200);

    const headers = await signFor(node, victim, target, { method: 'POST' });
    const own = await send(node.proxyUrl, target, { method: 'POST', headers });
    expect(own.status).toBe(204);
    const replayed = await send(node.proxyUrl, target, { method: 'POST', headers });
    expect(replayed.code).toBe('lease_revoked');
    const after = await send(node.proxyUrl, '/echo/after', {
      headers: await signFor(node, victim, '/echo/after'),
    });
    expect(after.code).toBe('lease_revoked');
    expect((await leasesOf(node, 'bot')).find((l) => l.id === victim.claims.jti)?.revoked).toBe(
      true,
    );
  });

  it('nexus up refuses key files and a store that other users can read, and says the fix', async () => {
    expect(await node.stop()).toBe(0);
    const n = join(node.dir, '.nexus');
    for (const [path, bad, good, fix] of [
      [join(n, 'master.key'), 0o640, 0o600, 'chmod 600'],
      [join(n, 'operator.token'), 0o644, 0o600, 'chmod 600'],
      [join(n, 'nexus.db'), 0o604, 0o600, 'chmod 600'],
      [n, 0o750, 0o700, 'chmod 700'],
    ] as const) {
      await chmod(path, bad);
      const r = await runCli(['up', '--config', node.configPath], { timeoutMs: 15_000 });
      await chmod(path, good);
      expect(r.code, path).toBe(1);
      expect(r.stdout).not.toContain('listening');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('(state_insecure)');
      expect(lines[0]).toContain(`${fix} ${path}`);
    }
    // Control: with the modes `nexus init` made, the node starts.
    await node.restart();
    expect((await node.admin('GET', '/v1/agents')).status).toBe(200);
  });

  it('the debug log of the whole file holds no secret, token or key', () => {
    const log = node.output();
    expect(log.length).toBeGreaterThan(0);
    expect(leaks(log, [SECRET])).toEqual([]);
    expect(log).not.toContain(node.operatorToken);
    expect(log).not.toContain(masterKey);
    for (const t of tokens) expect(log).not.toContain(t);
  });
});
