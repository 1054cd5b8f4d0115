/**
 * `nexus run --sandbox`: the child runs under bubblewrap (`bwrap`) in its own PID
 * namespace with its own /proc (it cannot see the parent's environment or memory, nor any
 * other process), with the node's state hidden (an empty tmpfs over each state directory,
 * /dev/null over each key file), a minimal /dev, no capabilities (even as root) and its own
 * session (no terminal injection). The network is shared, so the child reaches the
 * sidecar on loopback.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** The bwrap executable on `PATH`, or undefined. */
export function findBwrap(pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, 'bwrap');
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * The bwrap argument list that runs `command` with `hide` made invisible: directories
 * become empty tmpfs mounts, files read as /dev/null. Paths that do not exist are skipped.
 */
export function bwrapArgs(
  command: readonly string[],
  hide: readonly string[],
  cwd: string,
): string[] {
  const args = [
    '--bind',
    '/',
    '/',
    '--dev',
    '/dev',
    '--unshare-pid',
    '--proc',
    '/proc',
    '--cap-drop',
    'ALL',
    '--die-with-parent',
    '--new-session',
  ];
  for (const path of hide) {
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      continue;
    }
    if (isDir) args.push('--tmpfs', path);
    else args.push('--ro-bind', '/dev/null', path);
  }
  args.push('--chdir', cwd, '--', ...command);
  return args;
}
