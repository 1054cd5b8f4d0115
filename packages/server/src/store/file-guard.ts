// Detects a store file that was deleted or replaced under a running node.
//
// A SQLite connection keeps writing through the file descriptor it opened: if the
// database file or its WAL is unlinked or renamed over (an operator restoring a backup,
// cleaning a directory, another tool checkpointing and deleting the WAL), every later
// commit goes to a file nobody will ever open again, and the records are silently lost
// at the next restart (issue 10). The guard remembers the device and inode of each file
// when the store opens and, after every write, checks that the paths still name them.
//
// Security invariant: a write MUST NOT be reported durable once the guard has failed;
// the store latches the failure (`store_unavailable`) and refuses everything after it.
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { NexusError } from '@nexus-proxy/protocol';

/** A file's identity: `"<dev>:<ino>"` (bigint-safe text), or undefined when it is missing. */
export type FileIdentity = string;

/** The identity of the file at `path` now, or undefined when there is none. */
export function fileIdentity(path: string): FileIdentity | undefined {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}`;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** One guarded file: what to call it in an error, where it is, what it must be. */
export interface GuardedFile {
  /** E.g. "the store file" (never a secret: shown in logs and start-up errors). */
  readonly label: string;
  readonly path: string;
  readonly identity: FileIdentity;
}

/**
 * Checks that each path still names the file it named when the guard was made.
 *
 * Cost: one `stat` of each directory per check while nothing in it changed (a file cannot
 * be created, deleted or renamed in a directory without changing the directory's ctime);
 * the files themselves are stat'ed again when the directory changed, or changed within a
 * second of the last full check (file system timestamps are coarse: a change in the same
 * tick could leave the ctime as it was).
 *
 * @example
 * const guard = new FileGuard([{ label: 'the store file', path, identity: fileIdentity(path)! }]);
 * guard.check(); // throws NexusError('store_unavailable') once the file was replaced
 */
export class FileGuard {
  readonly files: readonly GuardedFile[];
  readonly #dirs: string[];
  /** The directories' `dev:ino:ctime` at the last full check, and when it started. */
  #dirState: string | undefined;
  #fullCheckAt = 0;
  readonly #now: () => number;

  /** @param now wall clock, ms (tests move it); file system times are wall-clock times. */
  constructor(files: readonly GuardedFile[], now: () => number = Date.now) {
    this.files = files;
    this.#dirs = [...new Set(files.map((f) => dirname(f.path)))];
    this.#now = now;
  }

  /**
   * @param cause the error a failed write raised, kept as the cause when a file changed.
   * @throws NexusError `store_unavailable` naming the first file that changed.
   */
  check(cause?: unknown): void {
    const fail = (message: string, error?: unknown) =>
      new NexusError(
        'store_unavailable',
        message,
        error === undefined && cause === undefined ? {} : { cause: error ?? cause },
      );
    let dirState = '';
    let newest = 0;
    try {
      for (const dir of this.#dirs) {
        const s = statSync(dir, { bigint: true });
        dirState += `${s.dev}:${s.ino}:${s.ctimeNs};`;
        newest = Math.max(newest, Number(s.ctimeMs));
      }
    } catch (error) {
      throw fail("the store's directory cannot be read (deleted or moved?)", error);
    }
    if (dirState === this.#dirState && newest < this.#fullCheckAt - 1000) return;
    const startedAt = this.#now();
    for (const f of this.files) {
      let now: FileIdentity | undefined;
      try {
        now = fileIdentity(f.path);
      } catch (error) {
        throw fail(`${f.label} cannot be checked`, error);
      }
      if (now !== f.identity) {
        throw fail(
          `${f.label} was ${now === undefined ? 'deleted' : 'replaced'} under the running node; ` +
            'stop the node, put the file back (or restore it from a backup) and start it again',
        );
      }
    }
    this.#dirState = dirState;
    this.#fullCheckAt = startedAt;
  }
}
