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
import { NexusError } from '@nexus/protocol';

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
 * @example
 * const guard = new FileGuard([{ label: 'the store file', path, identity: fileIdentity(path)! }]);
 * guard.check(); // throws NexusError('store_unavailable') once the file was replaced
 */
export class FileGuard {
  readonly files: readonly GuardedFile[];

  constructor(files: readonly GuardedFile[]) {
    this.files = files;
  }

  /**
   * @param cause the error a failed write raised, kept as the cause when a file changed.
   * @throws NexusError `store_unavailable` naming the first file that changed.
   */
  check(cause?: unknown): void {
    for (const f of this.files) {
      let now: FileIdentity | undefined;
      try {
        now = fileIdentity(f.path);
      } catch (error) {
        throw new NexusError('store_unavailable', `${f.label} cannot be checked`, {
          cause: error,
        });
      }
      if (now !== f.identity) {
        throw new NexusError(
          'store_unavailable',
          `${f.label} was ${now === undefined ? 'deleted' : 'replaced'} under the running node; ` +
            'stop the node, put the file back (or restore it from a backup) and start it again',
          cause === undefined ? {} : { cause },
        );
      }
    }
  }
}
