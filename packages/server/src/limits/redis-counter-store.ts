/**
 * Limit counters shared by every node of a cluster through Redis (issue 13/15): used
 * whenever `redis:` is configured, so a limit caps the cluster, not each node.
 *
 * - Windows: one key per (counter, window start); `INCRBY` and `PEXPIRE` (until the
 *   window's end plus a minute, so a node whose clock lags a little still finds it;
 *   relative, so Redis's own clock does not matter) in one `MULTI`, atomic in Redis: two
 *   nodes adding at once both see their own addition.
 * - Concurrency: a Lua script takes a slot only below `max` (check and increment in one
 *   step) and renews the key's expiry; release decrements. The expiry is a crash guard:
 *   slots a crashed node held are forgotten once no request has taken a slot for the
 *   guard's time (default 10 minutes).
 *
 * Fails closed: when Redis cannot answer, the request is refused with
 * `limits_unavailable` (503) and nothing is forwarded. Key names hash the counter's key,
 * so agent and service names never become part of a Redis key.
 */
import { createHash } from 'node:crypto';
import { NexusError } from '@nexus-proxy/protocol';
import type { Redis } from 'ioredis';
import type { LimitCounterStore, WindowCount } from './counter-store.js';

/** Extra life of a window key past its end (clock differences between nodes). */
const WINDOW_SLACK_MS = 60_000;

// KEYS[1] slot counter; ARGV[1] max, ARGV[2] crash-guard ttl (ms). 1: taken, 0: full.
const ACQUIRE = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`;

// KEYS[1] slot counter. Never below zero (a slot the crash guard already forgot).
const RELEASE = `
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
`;

function unavailable(cause: unknown): NexusError {
  return new NexusError('limits_unavailable', 'the shared limit counters are unavailable', {
    cause,
  });
}

function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('base64url');
}

export interface RedisLimitCounterStoreOptions {
  /** How long a slot counter lives after its last acquire (crash guard; default 10 min). */
  readonly slotTtlMs?: number;
}

/**
 * Limit counters in Redis. The client SHOULD be made with `enableOfflineQueue: false`, so
 * that a call fails at once while Redis is down.
 *
 * @param prefix key prefix (e.g. `nexus:`); the keys are `<prefix>limit:…`.
 * @example
 * const store = new RedisLimitCounterStore(redis, 'nexus:');
 * await store.add('r\u0000per-agent\u0000a:bot', 1, 60_000, Date.now());
 */
export class RedisLimitCounterStore implements LimitCounterStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #slotTtlMs: number;

  constructor(redis: Redis, prefix: string, options: RedisLimitCounterStoreOptions = {}) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#slotTtlMs = options.slotTtlMs ?? 600_000;
  }

  #windowKey(key: string, windowMs: number, now: number): { name: string; end: number } {
    const start = Math.floor(now / windowMs) * windowMs;
    return {
      name: `${this.#prefix}limit:w:${hashKey(key)}:${windowMs}:${start}`,
      end: start + windowMs,
    };
  }

  async add(key: string, amount: number, windowMs: number, now: number): Promise<WindowCount> {
    const w = this.#windowKey(key, windowMs, now);
    let results: [Error | null, unknown][] | null;
    try {
      results = await this.#redis
        .multi()
        .incrby(w.name, amount)
        .pexpire(w.name, w.end - now + WINDOW_SLACK_MS)
        .exec();
    } catch (error) {
      throw unavailable(error);
    }
    const first = results?.[0];
    if (first === undefined || first[0] !== null) throw unavailable(first?.[0] ?? 'aborted');
    return { total: Number(first[1]), resetAt: w.end };
  }

  async peek(key: string, windowMs: number, now: number): Promise<WindowCount> {
    const w = this.#windowKey(key, windowMs, now);
    let value: string | null;
    try {
      value = await this.#redis.get(w.name);
    } catch (error) {
      throw unavailable(error);
    }
    return { total: Number(value ?? 0), resetAt: w.end };
  }

  async acquire(key: string, max: number): Promise<boolean> {
    try {
      const taken = await this.#redis.eval(
        ACQUIRE,
        1,
        this.#slotKey(key),
        String(max),
        String(this.#slotTtlMs),
      );
      return taken === 1;
    } catch (error) {
      throw unavailable(error);
    }
  }

  async release(key: string): Promise<void> {
    try {
      await this.#redis.eval(RELEASE, 1, this.#slotKey(key));
    } catch (error) {
      throw unavailable(error);
    }
  }

  async inFlight(key: string): Promise<number> {
    try {
      return Number((await this.#redis.get(this.#slotKey(key))) ?? 0);
    } catch (error) {
      throw unavailable(error);
    }
  }

  #slotKey(key: string): string {
    return `${this.#prefix}limit:c:${hashKey(key)}`;
  }
}
