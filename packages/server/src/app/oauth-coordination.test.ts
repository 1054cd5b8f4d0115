// OAuth coordination of a cluster (issue 13) on a real PostgreSQL database: the refresh
// lock excludes a second holder of the same key on another pool (another node) until
// the first is done, and not a holder of another key; pending links are sealed at rest
// and consumed once.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { openPostgresStore, type PostgresStore } from '../store/postgres.js';
import { createTestDatabase, type TestDatabase } from '../store/test/pg-database.js';
import { keyringFromValue } from '../vault/master-key.js';
import { createVault } from '../vault/vault.js';
import { storeOAuthCoordination } from './oauth-coordination.js';

describe('OAuth coordination on PostgreSQL', () => {
  let db: TestDatabase | undefined;
  const stores: PostgresStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await db?.drop();
  });

  async function nodes() {
    db = await createTestDatabase('oauthco');
    const keyring = keyringFromValue(randomBytes(32).toString('base64'));
    const out = [];
    for (let i = 0; i < 2; i++) {
      const store = await openPostgresStore(db.url);
      stores.push(store);
      const vault = createVault({ store, keyring, clock: Date.now });
      await vault.init();
      out.push({
        store,
        co: storeOAuthCoordination({ store, vault, pool: store.pool, clock: Date.now }),
      });
    }
    return out as [(typeof out)[number], (typeof out)[number]];
  }

  it('one holder of a key at a time across nodes; other keys do not wait', async () => {
    const [a, b] = await nodes();
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const aHolds = new Promise<void>((r) => (entered = r));
    const first = a.co.exclusive('oauth2:conn', async () => {
      events.push('a in');
      entered();
      await gate;
      events.push('a out');
    });
    await aHolds;
    const second = b.co.exclusive('oauth2:conn', async () => {
      events.push('b in');
    });
    // Another connection's lock is not held up by the first.
    await b.co.exclusive('oauth2:other', async () => {
      events.push('other');
    });
    release();
    await Promise.all([first, second]);
    expect(events).toEqual(['a in', 'other', 'a out', 'b in']);
  });

  it('a pending link is sealed at rest, seen by every node and consumed once', async () => {
    const [a, b] = await nodes();
    const link = JSON.stringify({ principal: 'alice', verifier: 'pkce-verifier-secret-0123' });
    const hash = 'f'.repeat(64);
    await a.co.putPending(hash, 'mail', link, Date.now() + 60_000);
    const raw = await a.store.pool.query('SELECT sealed FROM oauth_pending');
    expect(JSON.stringify(raw.rows)).not.toContain('pkce-verifier-secret-0123');
    expect(await b.co.pendingService(hash)).toBe('mail');
    const both = await Promise.all([a.co.takePending(hash), b.co.takePending(hash)]);
    expect(both.filter((t) => t !== undefined)).toEqual([{ service: 'mail', link }]);
    expect(await a.co.pendingService(hash)).toBeUndefined();
  });

  it('a sealed link moved to another row or service does not open (review)', async () => {
    const [a, b] = await nodes();
    const alice = JSON.stringify({ principal: 'alice', verifier: 'pkce-verifier-alice' });
    const mallory = JSON.stringify({ principal: 'mallory', verifier: 'pkce-verifier-mallory' });
    const ha = 'a'.repeat(64);
    const hm = 'b'.repeat(64);
    await a.co.putPending(ha, 'mail', alice, Date.now() + 60_000);
    await a.co.putPending(hm, 'mail', mallory, Date.now() + 60_000);
    // Someone with write access to the store (not to the vault key) copies alice's sealed
    // link into mallory's row: the row's callback must not yield alice's link.
    await a.store.pool.query(
      'UPDATE oauth_pending SET sealed = (SELECT sealed FROM oauth_pending WHERE state_hash = $1) WHERE state_hash = $2',
      [ha, hm],
    );
    expect(await b.co.takePending(hm)).toBeUndefined();
    // Relabelled with another service: refused too, and consumed.
    await a.store.pool.query('UPDATE oauth_pending SET service = $1 WHERE state_hash = $2', [
      'drive',
      ha,
    ]);
    expect(await b.co.takePending(ha)).toBeUndefined();
    expect(await a.co.pendingService(ha)).toBeUndefined();
    // An untouched row still opens.
    await a.co.putPending(hm, 'mail', mallory, Date.now() + 60_000);
    expect(await b.co.takePending(hm)).toEqual({ service: 'mail', link: mallory });
  });
});
