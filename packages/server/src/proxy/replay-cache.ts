/**
 * The in-memory replay cache: every (lease id, nonce) pair seen within its signature window.
 *
 * MUST: `checkAndRecord` is atomic (single-threaded JS: check and insert in one call, no
 * await between them). MUST: the cache is bounded; when it is full of live entries it
 * refuses new requests (`rate_limited`) instead of evicting a live entry, which would
 * re-open a replay window. Entries are kept until their signature's `expires` plus skew,
 * in 1-second buckets so expiry costs O(expired entries).
 *
 * Restarts: a clean shutdown saves the live entries (`snapshot`) and the next start loads
 * them (`restore`), so nothing can be replayed across a planned restart. After a crash
 * there is no snapshot: the proxy then refuses every signature that could predate its
 * start (created <= start + skew), and signers re-sign. See app/replay-state.ts.
 */
import { NexusError } from '@nexus-proxy/protocol';
import type { NonceClaim } from '../audit/sink.js';

export interface ReplayCacheOptions {
  /** Maximum live entries. */
  readonly maxEntries: number;
  /** Seconds added to `expires` before an entry may be forgotten. */
  readonly skewSeconds: number;
  readonly clock: () => number;
}

/**
 * What the pipeline needs of replay protection: this in-memory cache on one node, or a
 * cache every node shares (`replay-shared.ts`: Redis, PostgreSQL), which answers
 * asynchronously.
 */
export interface ReplayGuard {
  /**
   * Records the nonce, or throws `replay_detected` if it was seen for this lease (by any
   * node sharing the guard). A shared guard that cannot record throws
   * `replay_unavailable`: the request MUST NOT proceed.
   * @param expires the signature's `expires`, seconds since the epoch
   */
  checkAndRecord(leaseId: string, nonce: string, expires: number): void | Promise<void>;
  /**
   * Set when the shared record is made with the request's audit record instead (`nexus up
   * --workers` on SQLite: `checkAndRecord` is then only this process's pre-filter): the
   * claim the pipeline hands to the audit append of the record that comes before forwarding
   * (`exclusive`), or of a refusal (not exclusive). See audit/sink.ts NonceClaim.
   */
  claim?(leaseId: string, nonce: string, expires: number): NonceClaim;
}

export interface ReplayCache extends ReplayGuard {
  /**
   * Records the nonce, or throws `replay_detected` if it was seen for this lease.
   * @param expires the signature's `expires`, seconds since the epoch
   */
  checkAndRecord(leaseId: string, nonce: string, expires: number): void;
  readonly size: number;
  /** Live entries as `[key, forgetAtSecond]` pairs, for a clean-shutdown snapshot. */
  snapshot(): [string, number][];
  /** Loads entries saved by `snapshot` (expired ones are dropped on the next sweep). */
  restore(entries: readonly [string, number][]): void;
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

  function remember(key: string, forgetAt: number): void {
    seen.add(key);
    let bucket = buckets.get(forgetAt);
    if (bucket === undefined) buckets.set(forgetAt, (bucket = []));
    bucket.push(key);
  }

  return {
    checkAndRecord(leaseId, nonce, expires) {
      const nowSec = Math.floor(options.clock() / 1000);
      sweep(nowSec);
      const key = `${leaseId}\u0000${nonce}`;
      if (seen.has(key)) throw new NexusError('replay_detected');
      if (seen.size >= options.maxEntries) throw new NexusError('rate_limited');
      remember(key, Math.max(expires + options.skewSeconds, nowSec) + 1);
    },
    snapshot() {
      const out: [string, number][] = [];
      for (const [forgetAt, keys] of buckets) for (const k of keys) out.push([k, forgetAt]);
      return out;
    },
    restore(entries) {
      const nowSec = Math.floor(options.clock() / 1000);
      for (const [key, forgetAt] of entries) {
        if (forgetAt > nowSec && !seen.has(key)) remember(key, forgetAt);
      }
    },
    get size() {
      return seen.size;
    },
  };
}
