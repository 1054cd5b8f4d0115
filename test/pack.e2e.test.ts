/**
 * Distribution (issue 11): `npm pack` of the four publishable workspaces gives tarballs that
 * install and run outside the clone. The tarballs go into a fresh temporary project (its own
 * package.json, nothing from this checkout on its resolution path), then the installed
 * `nexus` and `nexus-proxy` binaries answer `--help` and `--version`, and a plain Node
 * program imports the SDK and the protocol by their published names.
 *
 * Two depths. In `npm test` the install runs with `--ignore-scripts` (third-party packages
 * from the npm registry, `--prefer-offline`: seconds) and better-sqlite3's compiled binding
 * is copied from this checkout's identical version instead of being compiled again, which
 * takes about three minutes. `npm run pack:check` (NEXUS_PACK_CHECK=1) runs the install as a
 * user would, install scripts and the native build included.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from './helpers/node.js';

/** Full install, native build included (`npm run pack:check`). */
const FULL = process.env.NEXUS_PACK_CHECK === '1';

const WORKSPACES = ['packages/protocol', 'packages/sdk', 'packages/server', 'packages/cli'];

describe('npm pack tarballs installed outside the clone', () => {
  const work = mkdtempSync(join(tmpdir(), 'nexus-pack-'));
  const tarballs = join(work, 'tarballs');
  const project = join(work, 'project');
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const sh = (cmd: string, args: string[], cwd: string): string =>
    execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  it('packs the CLI, the SDK, the protocol and the server under their published names', () => {
    execFileSync('mkdir', ['-p', tarballs, project]);
    const args = ['pack', '--ignore-scripts', '--pack-destination', tarballs];
    for (const w of WORKSPACES) args.push('-w', w);
    sh('npm', args, REPO);
    expect(readdirSync(tarballs).sort()).toEqual([
      'nexus-proxy-0.1.0.tgz',
      'nexus-proxy-protocol-0.1.0.tgz',
      'nexus-proxy-sdk-0.1.0.tgz',
      'nexus-proxy-server-0.1.0.tgz',
    ]);
    // No build state and no compiled test in what would be published.
    for (const t of readdirSync(tarballs)) {
      const files = sh('tar', ['tzf', join(tarballs, t)], work);
      expect(files, t).toMatch(/^package\/package\.json$/m);
      expect(files, t).not.toMatch(/tsbuildinfo|\.test\.js/);
    }
  });

  it('installs into a fresh project; `nexus` and `nexus-proxy` run, the SDK imports', () => {
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'pack-check', private: true, type: 'module' }),
    );
    const files = readdirSync(tarballs).map((t) => join(tarballs, t));
    const install = ['install', '--prefer-offline', '--no-audit', '--no-fund'];
    sh('npm', [...install, ...(FULL ? [] : ['--ignore-scripts']), ...files], project);
    if (!FULL) {
      // The one install script that matters: better-sqlite3's native build, replaced by the
      // binding this checkout compiled for the same version and the same Node.
      const version = (dir: string) =>
        (
          JSON.parse(readFileSync(join(dir, 'better-sqlite3/package.json'), 'utf8')) as {
            version: string;
          }
        ).version;
      expect(version(join(project, 'node_modules'))).toBe(version(join(REPO, 'node_modules')));
      const binding = 'better-sqlite3/build/Release/better_sqlite3.node';
      mkdirSync(join(project, 'node_modules/better-sqlite3/build/Release'), { recursive: true });
      copyFileSync(join(REPO, 'node_modules', binding), join(project, 'node_modules', binding));
    }
    const installed = JSON.parse(
      readFileSync(join(project, 'node_modules/nexus-proxy/package.json'), 'utf8'),
    ) as { name: string; bin: Record<string, string> };
    expect(installed.name).toBe('nexus-proxy');
    expect(Object.keys(installed.bin).sort()).toEqual(['nexus', 'nexus-proxy']);

    for (const bin of ['nexus', 'nexus-proxy']) {
      const help = sh('npx', ['--no-install', bin, '--help'], project);
      expect(help).toMatch(/^Usage: nexus \[options\] \[command\]/m);
      expect(help).toMatch(/^\s+run\b/m);
      expect(sh('npx', ['--no-install', bin, '--version'], project).trim()).toBe('0.1.0');
    }
    // `nexus init` loads the server (and better-sqlite3's compiled binding, through the
    // store it creates): the installed node works, not only its help text.
    sh('npx', ['--no-install', 'nexus', 'init', '--dir', 'demo'], project);
    expect(readFileSync(join(project, 'demo/nexus.yaml'), 'utf8')).toMatch(/^services:/m);

    const program = [
      "import { enroll, NexusAgent } from '@nexus-proxy/sdk';",
      "import * as protocol from '@nexus-proxy/protocol';",
      'console.log(JSON.stringify({ enroll: typeof enroll, agent: typeof NexusAgent,',
      '  protocol: Object.keys(protocol).length > 10 }));',
    ].join('\n');
    writeFileSync(join(project, 'check.mjs'), program);
    expect(JSON.parse(sh('node', ['check.mjs'], project))).toEqual({
      enroll: 'function',
      agent: 'function',
      protocol: true,
    });
  }, 600_000);
});
