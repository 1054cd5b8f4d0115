// The Redis limit counters against a real, private redis-server: fixed windows, slots
// given back on release, the crash guard's expiry, two clients counting one limit, and
// failing closed with `limits_unavailable` while Redis is down.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NexusError } from '@nexus-proxy/protocol';
import { startTestRedis, type TestRedis } from '../../../../test/helpers/faults.js';
import { RedisLimitCounterStore } from './redis-counter-store.js';
import { createLimiter, isLimitRefusal } from './limiter.js';
import { limitsSchema, type LimitRule } from './schema.js';

let server: TestRedis;
let one: Redis;
let two: Redis;
let prefixes = 0;
/** A fresh key prefix per test: no test sees another's counters. */
const prefix = () => `t${++prefixes}:`;

beforeAll(async () => {
  server = await startTestRedis();
  const options = { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true };
  one = new Redis(server.url, options);
  two = new Redis(server.url, options);
  await Promise.all([one.connect(), two.connect()]);
});

afterAll(async () => {
  one?.disconnect();
  two?.disconnect();
  await server?.kill();
});

describe('RedisLimitCounterStore', () => {
  it('counts a fixed window across clients and starts the next window at zero', async () => {
    const p = prefix();
    const a = new RedisLimitCounterStore(one, p);
    const b = new RedisLimitCounterStore(two, p);
    const now = 120_000 + 500;
    expect(await a.add('k', 1, 60_000, now)).toEqual({ total: 1, resetAt: 180_000 });
    expect(await b.add('k', 2, 60_000, now + 10)).toEqual({ total: 3, resetAt: 180_000 });
    expect(await a.peek('k', 60_000, now)).toEqual({ total: 3, resetAt: 180_000 });
    // Another key, another window length: separate counters.
    expect((await a.add('other', 1, 60_000, now)).total).toBe(1);
    expect((await a.add('k', 1, 1_000, now)).total).toBe(1);
    // The next window.
    expect(await b.peek('k', 60_000, 180_000)).toEqual({ total: 0, resetAt: 240_000 });
    expect((await b.add('k', 1, 60_000, 180_000)).total).toBe(1);
    // Every key is under the prefix, names hashed, and expires.
    const keys = await one.keys(`${p}*`);
    expect(keys.length).toBe(4);
    for (const key of keys) {
      expect(key).toMatch(new RegExp(`^${p}limit:w:[A-Za-z0-9_-]{43}:\\d+:\\d+$`));
      expect(await one.pttl(key)).toBeGreaterThan(0);
    }
  });

  it('counts every concurrent add exactly once', async () => {
    const p = prefix();
    const stores = [new RedisLimitCounterStore(one, p), new RedisLimitCounterStore(two, p)];
    const totals = await Promise.all(
      Array.from({ length: 50 }, (_, i) => stores[i % 2]!.add('k', 1, 60_000, 1_000)),
    );
    expect(totals.map((t) => t.total).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
  });

  it('takes at most max slots across clients and gives them back on release', async () => {
    const p = prefix();
    const a = new RedisLimitCounterStore(one, p);
    const b = new RedisLimitCounterStore(two, p);
    const taken = await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).acquire('c', 2)),
    );
    expect(taken.filter(Boolean)).toHaveLength(2);
    // Both nodes read the shared in-flight count (the console's limits page).
    expect(await a.inFlight('c')).toBe(2);
    expect(await b.inFlight('c')).toBe(2);
    await a.release('c');
    expect(await b.inFlight('c')).toBe(1);
    expect(await b.acquire('c', 2)).toBe(true);
    expect(await a.acquire('c', 2)).toBe(false);
    await a.release('c');
    await b.release('c');
    // All given back: the key is gone, never negative.
    expect(await one.keys(`${p}*`)).toEqual([]);
    await a.release('c');
    expect(await one.keys(`${p}*`)).toEqual([]);
    expect(await a.acquire('c', 1)).toBe(true);
  });

  it('forgets the slots of a node that never released them once the crash guard expires', async () => {
    const p = prefix();
    const store = new RedisLimitCounterStore(one, p, { slotTtlMs: 200 });
    expect(await store.acquire('c', 1)).toBe(true);
    expect(await store.acquire('c', 1)).toBe(false);
    const [key] = await one.keys(`${p}*`);
    expect(await one.pttl(key!)).toBeGreaterThan(0);
    expect(await one.pttl(key!)).toBeLessThanOrEqual(200);
    // Waits for Redis's own expiry (what a crashed node leaves behind), not for a timer of ours.
    while ((await one.exists(key!)) === 1) await new Promise((r) => setTimeout(r, 50));
    expect(await store.acquire('c', 1)).toBe(true);
  });

  it('a limiter on two stores refuses the request past the limit on either', async () => {
    const p = prefix();
    const rules = limitsSchema.parse([
      { id: 'three', match: {}, per: 'agent', requests: { max: 3, window: '1m' } },
    ]) as readonly LimitRule[];
    const limiter = (redis: Redis) =>
      createLimiter({
        rules: () => rules,
        store: new RedisLimitCounterStore(redis, p),
        clock: () => 1_000,
      });
    const a = limiter(one);
    const b = limiter(two);
    const input = { agent: 'bot', roles: [], service: 'echo', bytesIn: 0 };
    await a.admit(input);
    await b.admit(input);
    await a.admit(input);
    const refused = await b.admit(input).catch((e: unknown) => e);
    expect(isLimitRefusal(refused)).toBe(true);
  });

  it('a cost budget spent through one node refuses on the other; a credential counts its services together', async () => {
    const p = prefix();
    const rules = limitsSchema.parse([
      { id: 'tokens', match: {}, cost: { max: 100, window: '1h' } },
      {
        id: 'key',
        match: { credentials: ['shared'] },
        per: 'credential',
        requests: { max: 2, window: '1h' },
      },
    ]) as readonly LimitRule[];
    const limiter = (redis: Redis) =>
      createLimiter({
        rules: () => rules,
        store: new RedisLimitCounterStore(redis, p),
        clock: () => 5_000,
      });
    const a = limiter(one);
    const b = limiter(two);
    const input = { agent: 'bot', roles: [], service: 'llm', bytesIn: 0 };
    // Under budget on admission; the response's cost (a fraction rounds up) takes it to 100.
    (await a.admit(input))(0, 99.5);
    // The add is not awaited by the release: give Redis its round trip.
    for (let i = 0; i < 50 && (await two.keys(`${p}*`)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    const refused = await b.admit(input).catch((e: unknown) => e);
    expect(isLimitRefusal(refused) && refused.kind).toBe('cost');

    const svc = (service: string, credential?: string) => ({
      agent: 'bot',
      roles: [],
      service,
      ...(credential === undefined ? {} : { credential }),
      bytesIn: 0,
    });
    const other = prefix();
    const c = createLimiter({
      rules: () => rules.filter((r) => r.id === 'key'),
      store: new RedisLimitCounterStore(one, other),
      clock: () => 5_000,
    });
    const d = createLimiter({
      rules: () => rules.filter((r) => r.id === 'key'),
      store: new RedisLimitCounterStore(two, other),
      clock: () => 5_000,
    });
    await c.admit(svc('search-a', 'shared'));
    await d.admit(svc('search-b', 'shared'));
    await c.admit(svc('search-c', 'own')); // another credential: not matched
    const over = await d.admit(svc('search-a', 'shared')).catch((e: unknown) => e);
    expect(isLimitRefusal(over) && over.limit).toBe('key');
  });

  it('fails closed with limits_unavailable while Redis is down', async () => {
    const p = prefix();
    const redis = new Redis(server.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
      retryStrategy: () => 100,
    });
    redis.on('error', () => undefined);
    await redis.connect();
    const store = new RedisLimitCounterStore(redis, p);
    await server.kill();
    try {
      for (const op of [
        () => store.add('k', 1, 60_000, 0),
        () => store.peek('k', 60_000, 0),
        () => store.acquire('c', 1),
        () => store.release('c'),
      ]) {
        const err = await op().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(NexusError);
        expect((err as NexusError).code).toBe('limits_unavailable');
        expect((err as NexusError).status).toBe(503);
      }
    } finally {
      redis.disconnect();
      await server.start();
      await Promise.all(
        [one, two].map((c) => c.status === 'ready' || c.connect().catch(() => undefined)),
      );
    }
  });
});
