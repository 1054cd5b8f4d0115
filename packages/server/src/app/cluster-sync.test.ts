// The change notices between nodes (issue 13), on their own: with the fallback poll set
// far out, a change published by one node reaches the other through PostgreSQL NOTIFY,
// or through Redis pub/sub (a private redis-server), and the publishing node ignores
// its own notice.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { openPostgresStore, type PostgresStore } from '../store/postgres.js';
import { createTestDatabase, type TestDatabase } from '../store/test/pg-database.js';
import { createLogger } from '../util/logger.js';
import { startClusterSync, type ClusterSync } from './cluster-sync.js';
import { startTestRedis } from '../../../../test/helpers/faults.js';

/** Resolves once `count()` reaches `n` (the test's own timeout bounds the wait). */
async function reaches(count: () => number, n: number): Promise<void> {
  while (count() < n) await new Promise((r) => setTimeout(r, 5));
}

describe('cluster change notices', () => {
  let db: TestDatabase | undefined;
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    await db?.drop();
  });

  async function node(
    store: PostgresStore,
    url: string,
    redis?: { client: Redis; prefix: string },
  ): Promise<{ sync: ClusterSync; refreshes: () => number }> {
    let refreshes = 0;
    const sync = await startClusterSync({
      store,
      pool: store.pool,
      postgresUrl: url,
      redis,
      refresh: async () => {
        refreshes++;
      },
      logger: createLogger('error'),
      pollMs: 3_600_000,
    });
    closers.push(() => sync.close());
    return { sync, refreshes: () => refreshes };
  }

  it.each(['postgres', 'redis'])('a change on one node reaches the other by %s', async (via) => {
    db = await createTestDatabase('sync');
    const url = db.url;
    const stores = [await openPostgresStore(url), await openPostgresStore(url)];
    for (const s of stores) closers.push(() => s.close());
    const prefix = 'nexus-test:';
    // A private redis-server: the test never depends on a shared one.
    const server = via === 'redis' ? await startTestRedis() : undefined;
    if (server !== undefined) closers.push(() => server.kill());
    const redis = (): { client: Redis; prefix: string } | undefined => {
      if (server === undefined) return undefined;
      const client = new Redis(server.url, { enableOfflineQueue: true });
      closers.push(() => client.quit());
      return { client, prefix };
    };
    const a = await node(stores[0] as PostgresStore, url, redis());
    const b = await node(stores[1] as PostgresStore, url, redis());
    // Both caught up once on start (the PostgreSQL listener does; Redis needs no catch-up).
    const a0 = a.refreshes();
    const b0 = b.refreshes();
    await a.sync.publish();
    await reaches(b.refreshes, b0 + 1);
    await b.sync.publish();
    await reaches(a.refreshes, a0 + 1);
    // Its own notice is not a change for the node that sent it.
    await new Promise((r) => setTimeout(r, 100));
    expect(a.refreshes()).toBe(a0 + 1);
    expect(b.refreshes()).toBe(b0 + 1);
    expect(await stores[0]?.getMeta('cluster.change')).toMatch(/^[\w-]+\.[\w-]+$/);
  });
});
