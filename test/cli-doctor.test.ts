/**
 * Issue 15, `nexus doctor` through the real `nexus` binary: a healthy initialised node
 * directory passes; a world-readable master key, a taken port, an unset credential and an
 * unreachable upstream each give their fail or warn with a fix; a running node is found and
 * its ports count as its own; no secret is ever printed and no upstream gets a request.
 */
import { chmod, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runCli, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  createTestDatabase,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix: string | null;
}

async function doctor(
  configPath: string,
  env: Record<string, string> = {},
): Promise<{ code: number; checks: Check[]; byName: Map<string, Check>; output: string }> {
  const r = await runCli(['doctor', '--config', configPath, '--json'], { env });
  const { checks } = JSON.parse(r.stdout) as { checks: Check[] };
  return {
    code: r.code,
    checks,
    byName: new Map(checks.map((c) => [c.name, c])),
    output: r.stdout + r.stderr,
  };
}

describe('nexus doctor (issue 15)', () => {
  describe('on an initialised node directory, no node running', () => {
    let dir: string;
    let configPath: string;
    let proxyPort: number;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'nexus-doctor-'));
      proxyPort = await freePort();
      const adminPort = await freePort();
      const init = await runCli(['init', '--dir', dir]);
      expect(init.code).toBe(0);
      configPath = join(dir, 'nexus.yaml');
      const config = parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
      config.proxy = { listen: `127.0.0.1:${proxyPort}` };
      config.admin = { listen: `127.0.0.1:${adminPort}` };
      config.services = {};
      config.policies = [];
      await writeFile(configPath, stringify(config));
    });

    it('passes a healthy node directory: every check ok, exit 0', async () => {
      const r = await doctor(configPath);
      expect(r.code).toBe(0);
      expect(r.checks.map((c) => c.status)).toEqual(r.checks.map(() => 'ok'));
      expect([...r.byName.keys()]).toEqual(
        expect.arrayContaining([
          'config',
          'state_files',
          'master_key',
          'node',
          'proxy_port',
          'admin_port',
          'store',
        ]),
      );
      expect(r.byName.get('store')?.detail).toMatch(/opens read-only; its schema version \d+/);
      expect(r.byName.get('node')?.detail).toMatch(/no node is running/);
      // The human form says the same and exits the same.
      const human = await runCli(['doctor', '--config', configPath]);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/0 failed, 0 warnings/);
    });

    it('fails a world-readable master key, with the chmod that fixes it', async () => {
      const key = join(dir, '.nexus', 'master.key');
      await chmod(key, 0o644);
      try {
        const r = await doctor(configPath);
        expect(r.code).toBe(1);
        const c = r.byName.get('state_files');
        expect(c?.status).toBe('fail');
        expect(c?.detail).toContain(key);
        expect(c?.fix).toBe(`chmod 600 ${key}`);
        const human = await runCli(['doctor', '--config', configPath]);
        expect(human.code).toBe(1);
        expect(human.stdout).toContain(`state_files: chmod 600 ${key}`);
        // The key's bytes never appear, whatever the mode.
        const keyText = (await readFile(key, 'utf8')).trim();
        expect(r.output + human.stdout + human.stderr).not.toContain(keyText);
      } finally {
        await chmod(key, 0o600);
      }
    });

    it('fails a proxy port another process holds, naming the setting to change', async () => {
      const squatter: Server = createServer();
      await new Promise<void>((res) => squatter.listen(proxyPort, '127.0.0.1', res));
      try {
        const r = await doctor(configPath);
        expect(r.code).toBe(1);
        const c = r.byName.get('proxy_port');
        expect(c?.status).toBe('fail');
        expect(c?.detail).toContain(`127.0.0.1:${proxyPort}`);
        expect(c?.fix).toContain('proxy.listen');
        expect(r.byName.get('admin_port')?.status).toBe('ok');
      } finally {
        await new Promise<void>((res) => squatter.close(() => res()));
      }
    });

    it('fails an invalid config with the loader’s own message, and checks nothing else', async () => {
      const bad = join(dir, 'bad.yaml');
      await writeFile(bad, 'version: 1\nproxy: { listen: "nowhere" }\n');
      const r = await doctor(bad);
      expect(r.code).toBe(1);
      expect(r.checks).toHaveLength(1);
      expect(r.checks[0]).toMatchObject({ name: 'config', status: 'fail' });
      expect(r.checks[0]?.detail).toMatch(/proxy\.listen/);
      expect(r.checks[0]?.fix).toContain(bad);
    });
  });

  describe('with a running node', () => {
    const secret = 'sk-doctor-secret-value-9f3a1c';
    let node: TestNode;
    let upstream: TestUpstream;

    beforeAll(async () => {
      upstream = await startUpstream();
      const closedPort = await freePort();
      node = await startNode({
        services: {
          good: {
            upstream: upstream.url,
            allow_insecure_upstream: true,
            auth: { type: 'bearer', credential: 'good-cred' },
          },
          down: {
            upstream: `http://127.0.0.1:${closedPort}`,
            allow_insecure_upstream: true,
            auth: { type: 'bearer', credential: 'unset-cred' },
          },
        },
      });
      await node.setCredential('good-cred', { value: secret });
    });

    afterAll(async () => {
      await node?.stop();
      await upstream?.close();
    });

    it('finds the node, owns its ports, and warns of an unset credential and an unreachable upstream', async () => {
      const r = await doctor(node.configPath);
      // Warnings only: nothing stops the node from working.
      expect(r.code).toBe(0);
      expect(r.byName.get('node')).toMatchObject({ status: 'ok' });
      expect(r.byName.get('node')?.detail).toContain('a node is running');
      expect(r.byName.get('proxy_port')?.detail).toMatch(/served by this node/);
      expect(r.byName.get('admin_port')?.detail).toMatch(/served by this node/);
      expect(r.byName.get('store')?.status).toBe('ok');
      expect(r.byName.get('clock')?.status).toBe('ok');

      expect(r.byName.get('credential.good')?.status).toBe('ok');
      const unset = r.byName.get('credential.down');
      expect(unset?.status).toBe('warn');
      expect(unset?.detail).toContain('unset-cred');
      expect(unset?.fix).toContain('nexus credential set unset-cred');

      expect(r.byName.get('upstream.good')?.status).toBe('ok');
      const down = r.byName.get('upstream.down');
      expect(down?.status).toBe('warn');
      expect(down?.detail).toMatch(/not reachable/);
      expect(down?.fix).toContain('services.down.upstream');

      // Never a secret: not the credential's value, not the operator token.
      const human = await runCli(['doctor', '--config', node.configPath]);
      for (const text of [r.output, human.stdout + human.stderr]) {
        expect(text).not.toContain(secret);
        expect(text).not.toContain(node.operatorToken);
      }
      // A TCP connect only: the upstream never saw a request.
      expect(upstream.requests).toHaveLength(0);
    });
  });

  describe('on a PostgreSQL store', () => {
    let db: TestDatabase;
    let configPath: string;

    beforeAll(async () => {
      db = await createTestDatabase('doctor');
      const dir = await mkdtemp(join(tmpdir(), 'nexus-doctor-pg-'));
      const init = await runCli(['init', '--dir', dir, '--store', db.url]);
      expect(init.code).toBe(0);
      configPath = join(dir, 'nexus.yaml');
      const config = parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
      config.proxy = { listen: `127.0.0.1:${await freePort()}` };
      config.admin = { listen: `127.0.0.1:${await freePort()}` };
      config.services = {};
      config.policies = [];
      await writeFile(configPath, stringify(config));
    });

    afterAll(async () => {
      await db?.drop();
    });

    it('connects and reads the schema version; a database that is gone fails', async () => {
      const pgSecret = 'doctor-pg-password-7d1e';
      const r = await doctor(configPath, { PGPASSWORD: pgSecret });
      expect(r.code).toBe(0);
      expect(r.byName.get('store')?.status).toBe('ok');
      expect(r.byName.get('store')?.detail).toMatch(
        /PostgreSQL store .* schema version \d+ is current/,
      );
      await db.drop();
      const gone = await doctor(configPath, { PGPASSWORD: pgSecret });
      expect(gone.code).toBe(1);
      expect(gone.byName.get('store')?.status).toBe('fail');
      expect(gone.byName.get('store')?.fix).toMatch(/PostgreSQL/);
      expect(r.output + gone.output).not.toContain(pgSecret);
    });
  });
});
