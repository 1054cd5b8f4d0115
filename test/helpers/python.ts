/**
 * Finds the Python interpreters that can run clients/python (issue 11): `python3` on PATH
 * and Debian's /usr/bin/python3, each only if it imports `cryptography`. Runs a script of
 * clients/python with the library on PYTHONPATH (no install needed).
 */
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './node.js';

export const PYTHON_CLIENT = join(REPO, 'clients/python');

export interface Python {
  /** The interpreter's real path. */
  command: string;
  /** `3.11.7 cryptography 48.0.0` */
  version: string;
}

/** The usable interpreters, one per distinct executable, and why the others were skipped. */
export function findPythons(): { found: Python[]; skipped: string[] } {
  const found: Python[] = [];
  const skipped: string[] = [];
  const seen = new Set<string>();
  for (const command of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(
      command,
      [
        '-c',
        'import os, sys, platform; print(os.path.realpath(sys.executable)); import cryptography; print(platform.python_version(), "cryptography", cryptography.__version__)',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    const [exe, version] = (probe.stdout ?? '').trim().split('\n');
    if (probe.error || !exe) {
      skipped.push(`${command}: not found`);
    } else if (probe.status !== 0 || !version) {
      skipped.push(`${command}: cannot import cryptography`);
    } else if (!seen.has(exe)) {
      seen.add(exe);
      // The real executable, not a version-manager shim that needs the caller's environment.
      found.push({ command: exe, version });
    }
  }
  return { found, skipped };
}

export interface PythonRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `python ARGS` in clients/python (so `tests/x.py` names a script there), with `env`
 * added to a minimal environment and the library on PYTHONPATH. */
export function runPython(
  python: Python,
  args: string[],
  env: Record<string, string> = {},
): Promise<PythonRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(python.command, args, {
      cwd: PYTHON_CLIENT,
      // No bytecode written into the source tree.
      env: {
        PATH: process.env.PATH ?? '',
        PYTHONPATH: PYTHON_CLIENT,
        PYTHONDONTWRITEBYTECODE: '1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}
