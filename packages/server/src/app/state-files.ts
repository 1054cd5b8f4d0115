/**
 * The node's state on disk: the master key file, the operator token file, the SQLite
 * store (with its -wal and -shm) and the directories that hold them. `nexus up` refuses to
 * start when another local user could read any of them (`checkStateFileModes`), and
 * `nexus run` uses the same list to warn an agent that could read them, or to hide them
 * from its sandbox.
 *
 * MUST: a message names paths and the fix (`chmod ...`), never a file's content.
 */
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config/schema.js';

/** One piece of node state: a key file, the store, or a directory holding them. */
export interface StateFile {
  readonly path: string;
  readonly kind: 'file' | 'directory';
}

/** The operator token file `nexus init` writes: `.nexus/operator.token` beside nexus.yaml. */
export function operatorTokenFile(config: Config): string {
  return join(config.base_dir, '.nexus', 'operator.token');
}

/**
 * Every path of the node's state, whether it exists or not: the key files and the store
 * files, then the directories that hold them (not the config file's own directory, which
 * is the operator's to lay out: nexus.yaml holds no secret).
 */
export function nodeStateFiles(config: Config): StateFile[] {
  const files: string[] = [];
  if (config.master_key.source === 'file') files.push(config.master_key.path);
  files.push(operatorTokenFile(config));
  if (config.store.driver === 'sqlite' && config.store.path !== ':memory:') {
    const db = config.store.path;
    files.push(db, `${db}-wal`, `${db}-shm`);
  }
  const dirs = new Set<string>();
  for (const f of files) {
    const d = dirname(f);
    if (d !== config.base_dir && d !== dirname(d)) dirs.add(d);
  }
  return [
    ...[...dirs].map((path) => ({ path, kind: 'directory' as const })),
    ...[...new Set(files)].map((path) => ({ path, kind: 'file' as const })),
  ];
}

/** `nexus up` refuses to start: a key file or the store is open to other local users. */
export class StateFileError extends Error {
  /** Stable code; callers switch on this, never on `message`. */
  readonly code = 'state_insecure' as const;
  readonly status = 500;
  readonly expose = false;

  /**
   * @param fix the one command that fixes it (`chmod ...`), for `nexus doctor`.
   */
  constructor(
    message: string,
    readonly fix = '',
  ) {
    super(message);
    this.name = 'StateFileError';
  }
}

function shellQuote(path: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

/**
 * Refuses node state that group or others can access: files MUST be mode 0600 (or
 * stricter), their directories 0700. Throws one {@link StateFileError} naming every such
 * path and the one command that fixes them. POSIX only (Windows uses ACLs).
 *
 * @example
 * checkStateFileModes(config); // throws: "... run: chmod 600 /srv/nexus/.nexus/master.key"
 */
export function checkStateFileModes(config: Config): void {
  if (process.platform === 'win32') return;
  const open: StateFile[] = [];
  for (const entry of nodeStateFiles(config)) {
    let mode: number;
    try {
      mode = statSync(entry.path).mode;
    } catch {
      continue; // not there (yet): nothing to expose
    }
    if ((mode & 0o077) !== 0) open.push(entry);
  }
  if (open.length === 0) return;
  const dirs = open.filter((e) => e.kind === 'directory').map((e) => shellQuote(e.path));
  const files = open.filter((e) => e.kind === 'file').map((e) => shellQuote(e.path));
  const fix = [
    ...(dirs.length > 0 ? [`chmod 700 ${dirs.join(' ')}`] : []),
    ...(files.length > 0 ? [`chmod 600 ${files.join(' ')}`] : []),
  ].join(' && ');
  throw new StateFileError(
    `refusing to start: ${open.map((e) => e.path).join(', ')} ${open.length === 1 ? 'is' : 'are'} accessible to other users (group or others), and ${open.length === 1 ? 'holds' : 'hold'} the node's keys or state; run: ${fix}`,
    fix,
  );
}
