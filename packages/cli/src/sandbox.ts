/**
 * `nexus run --sandbox`: the child runs under bubblewrap (`bwrap`) in its own PID
 * namespace with its own /proc (it cannot see the parent's environment or memory, nor any
 * other process), seeing only the system directories (read-only), a fresh /tmp, its
 * working directory and the paths given with `--share`, with the node's state hidden even
 * there and the node's config read-only, a minimal /dev, no capabilities (even as root)
 * and its own session (no terminal injection). The network is shared, so the child
 * reaches the sidecar on loopback.
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
 * What the command sees of this host under the sandbox: the system directories, read-only.
 * Everything else (home directories, /var, /srv, /mnt, /tmp, wherever a node keeps its
 * state) is absent, unless it is the working directory or given with `--share`.
 */
const SYSTEM_DIRS = [
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/etc',
  '/opt',
];

/** The sandbox's view of this host, see {@link bwrapArgs}. */
export interface SandboxView {
  /** The working directory: visible and writable (the agent's own directory). */
  readonly cwd: string;
  /** Further paths the command may read and write (`--share`). */
  readonly share: readonly string[];
  /** Paths made invisible inside what is visible: a directory becomes empty, a file reads as /dev/null. */
  readonly hide: readonly string[];
  /** Paths kept read-only inside what is visible (the node's nexus.yaml, if the command shares its directory). */
  readonly readOnly: readonly string[];
}

/**
 * The bwrap argument list that runs `command` in `view`: an allow-list, not a block-list.
 * The command sees the system directories read-only, a fresh /tmp, a minimal /dev, its own
 * /proc, and its working directory and `share` paths; it cannot see or change anything
 * else on the host, wherever the node keeps its state (issue 10 review: a block-list of the
 * state this run knew of left a node elsewhere readable, and `/` writable). Paths that do
 * not exist are skipped.
 */
export function bwrapArgs(command: readonly string[], view: SandboxView): string[] {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) args.push('--ro-bind-try', dir, dir);
  args.push('--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp');
  for (const path of [view.cwd, ...view.share]) args.push('--bind-try', path, path);
  for (const path of view.hide) {
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      continue;
    }
    if (isDir) args.push('--tmpfs', path);
    else args.push('--ro-bind', '/dev/null', path);
  }
  for (const path of view.readOnly) args.push('--ro-bind-try', path, path);
  args.push(
    '--unshare-pid',
    '--cap-drop',
    'ALL',
    '--die-with-parent',
    '--new-session',
    '--chdir',
    view.cwd,
    '--',
    ...command,
  );
  return args;
}
