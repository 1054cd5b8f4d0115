/**
 * Where limit counters live. `LimitCounterStore` is the seam for cluster mode: one node
 * keeps them in memory (`MemoryLimitCounterStore`); several nodes share them through a
 * store every node reaches (Redis: `INCRBY` + `PEXPIRE` on a key per window, `INCR`/`DECR`
 * for concurrency). The limiter (limiter.ts) only talks to this interface.
 */

/** A fixed window's count after an operation. */
export interface WindowCount {
  /** The window's total. */
  readonly total: number;
  /** When the window ends (ms since the epoch): the earliest time a refusal may pass. */
  readonly resetAt: number;
}

/** Counters for limits: fixed windows (requests, bytes) and in-flight gauges (concurrency). */
export interface LimitCounterStore {
  /**
   * Adds `amount` to `key`'s counter in the fixed window of `windowMs` that holds `now`
   * (windows start at multiples of `windowMs` since the epoch) and returns the new total.
   * MUST be atomic: two nodes adding at once both see their own addition.
   */
  add(key: string, amount: number, windowMs: number, now: number): Promise<WindowCount>;
  /** The current window's total without changing it. */
  peek(key: string, windowMs: number, now: number): Promise<WindowCount>;
  /** Takes one of `max` slots of `key`; false (and nothing taken) when all are taken. */
  acquire(key: string, max: number): Promise<boolean>;
  /** Gives back a slot taken by `acquire`. */
  release(key: string): Promise<void>;
  /** Slots of `key` taken now (the console's limits page). */
  inFlight(key: string): Promise<number>;
}

interface Window {
  start: number;
  end: number;
  total: number;
}

/** Windows kept before expired ones are swept (bounded memory). */
const SWEEP_ABOVE = 10_000;

/** The single-node store: counters in this process's memory, lost on restart. */
export class MemoryLimitCounterStore implements LimitCounterStore {
  readonly #windows = new Map<string, Window>();
  readonly #inFlight = new Map<string, number>();

  #window(key: string, windowMs: number, now: number): Window {
    const start = Math.floor(now / windowMs) * windowMs;
    const k = `${windowMs}\u0000${key}`;
    let w = this.#windows.get(k);
    if (w === undefined || w.start !== start) {
      if (w === undefined && this.#windows.size >= SWEEP_ABOVE) this.#sweep(now);
      w = { start, end: start + windowMs, total: 0 };
      this.#windows.set(k, w);
    }
    return w;
  }

  #sweep(now: number): void {
    for (const [k, w] of this.#windows) if (w.end <= now) this.#windows.delete(k);
  }

  add(key: string, amount: number, windowMs: number, now: number): Promise<WindowCount> {
    const w = this.#window(key, windowMs, now);
    w.total += amount;
    return Promise.resolve({ total: w.total, resetAt: w.end });
  }

  peek(key: string, windowMs: number, now: number): Promise<WindowCount> {
    const w = this.#window(key, windowMs, now);
    return Promise.resolve({ total: w.total, resetAt: w.end });
  }

  acquire(key: string, max: number): Promise<boolean> {
    const n = this.#inFlight.get(key) ?? 0;
    if (n >= max) return Promise.resolve(false);
    this.#inFlight.set(key, n + 1);
    return Promise.resolve(true);
  }

  inFlight(key: string): Promise<number> {
    return Promise.resolve(this.#inFlight.get(key) ?? 0);
  }

  release(key: string): Promise<void> {
    const n = (this.#inFlight.get(key) ?? 0) - 1;
    if (n <= 0) this.#inFlight.delete(key);
    else this.#inFlight.set(key, n);
    return Promise.resolve();
  }
}
