/**
 * The in-memory replay cache: every (lease id, nonce) pair seen within its signature window.
 *
 * MUST: `checkAndRecord` is atomic (single-threaded JS: check and insert in one call, no
 * await between them). MUST: the cache is bounded; when it is full of live entries it
 * refuses new requests (`rate_limited`) instead of evicting a live entry, which would
 * re-open a replay window. Entries are kept until their signature's `expires` plus skew,
 * in 1-second buckets so expiry costs O(expired entries).
 *
 * Restarts: the cache is not persisted. Instead the proxy refuses any signature created
 * before the process started (see `notBefore`), so a request captured before a restart
 * cannot be replayed after it; a client whose request straddled the restart re-signs.
 */
import { NexusError } from '@nexus/protocol';

export interface ReplayCacheOptions {
  /** Maximum live entries. */
  readonly maxEntries: number;
  /** Seconds added to `expires` before an entry may be forgotten. */
  readonly skewSeconds: number;
  readonly clock: () => number;
}

export interface ReplayCache {
  /**
   * Records the nonce, or throws `replay_detected` if it was seen for this lease.
   * @param expires the signature's `expires`, seconds since the epoch
   */
  checkAndRecord(leaseId: string, nonce: string, expires: number): void;
  readonly size: number;
}

export function createReplayCache(options: ReplayCacheOptions): ReplayCache {
  const seen = new Set<string>();
  // bucket second -> keys that may be forgotten after that second
  const buckets = new Map<number, string[]>();
  let oldestBucket = Math.floor(options.clock() / 1000);

  function sweep(nowSec: number): void {
    for (; oldestBucket < nowSec; oldestBucket++) {
      const keys = buckets.get(oldestBucket);
      if (keys === undefined) continue;
      for (const k of keys) seen.delete(k);
      buckets.delete(oldestBucket);
    }
  }

  return {
    checkAndRecord(leaseId, nonce, expires) {
      const nowSec = Math.floor(options.clock() / 1000);
      sweep(nowSec);
      const key = `${leaseId}\u0000${nonce}`;
      if (seen.has(key)) throw new NexusError('replay_detected');
      if (seen.size >= options.maxEntries) throw new NexusError('rate_limited');
      seen.add(key);
      const forgetAt = Math.max(expires + options.skewSeconds, nowSec) + 1;
      let bucket = buckets.get(forgetAt);
      if (bucket === undefined) buckets.set(forgetAt, (bucket = []));
      bucket.push(key);
    },
    get size() {
      return seen.size;
    },
  };
}
