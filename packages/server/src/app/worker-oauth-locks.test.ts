// The OAuth refresh lock of `nexus up --workers N` on SQLite (issue 13), over real IpcPeer
// pairs joined as the workers' pipes are (structured clone, delivered later): one holder
// of a key at a time across workers, first come first served; a wait past its bound fails
// `store_unavailable` and the refresh never runs; a worker that exits releases its locks.
import { describe, expect, it } from 'vitest';
import { NexusError } from '@nexus-proxy/protocol';
import { IpcPeer } from './ipc-peer.js';
import { answerOAuthLocks, OAuthLockTable, workerOAuthExclusive } from './worker-oauth-locks.js';

/** One worker's pipe: the primary's peer for it and the worker's own, and a cut. */
function pipe(): { primary: IpcPeer; worker: IpcPeer; cut: () => void } {
  let open = true;
  const deliver = (to: () => IpcPeer) => (message: unknown) => {
    if (!open) throw new Error('channel closed');
    const copy = structuredClone(message);
    setImmediate(() => to().receive(copy));
  };
  const primary: IpcPeer = new IpcPeer(deliver(() => worker));
  const worker: IpcPeer = new IpcPeer(deliver(() => primary));
  return { primary, worker, cut: () => (open = false) };
}

/** A primary with `n` workers sharing one lock table. */
function workers(n: number, waitMs?: number) {
  const table = new OAuthLockTable(waitMs);
  return {
    table,
    workers: Array.from({ length: n }, () => {
      const p = pipe();
      answerOAuthLocks(p.primary, table);
      return { ...p, exclusive: workerOAuthExclusive(p.worker, waitMs) };
    }),
  };
}

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

const codeOf = (e: unknown) => (e instanceof NexusError ? e.code : String(e));

describe('OAuth refresh lock of the workers (primary-held)', () => {
  it('one holder of a key at a time across workers, in arrival order; other keys do not wait', async () => {
    const { table, workers: w } = workers(3);
    const [a, b, c] = w as [(typeof w)[0], (typeof w)[0], (typeof w)[0]];
    const events: string[] = [];
    const aIn = gate();
    const aOut = gate();
    const first = a.exclusive('oauth2:conn', async () => {
      events.push('a in');
      aIn.open();
      await aOut.promise;
      events.push('a out');
    });
    await aIn.promise;
    const second = b.exclusive('oauth2:conn', async () => {
      events.push('b in');
      await new Promise((r) => setTimeout(r, 20));
      events.push('b out');
    });
    // Let b's ask reach the primary before c's (arrival order is the grant order).
    await new Promise((r) => setTimeout(r, 20));
    const third = c.exclusive('oauth2:conn', async () => {
      events.push('c in');
    });
    await new Promise((r) => setTimeout(r, 20));
    await b.exclusive('oauth2:other', async () => {
      events.push('other');
    });
    expect(events).toEqual(['a in', 'other']);
    aOut.open();
    await Promise.all([first, second, third]);
    expect(events).toEqual(['a in', 'other', 'a out', 'b in', 'b out', 'c in']);
    // Every unlock reached the primary: nothing is held or waiting.
    await new Promise((r) => setTimeout(r, 20));
    expect(table.size).toBe(0);
  });

  it('a failing refresh releases the lock too', async () => {
    const { table, workers: w } = workers(2);
    const [a, b] = w as [(typeof w)[0], (typeof w)[0]];
    const failed = await a
      .exclusive('oauth2:conn', () => Promise.reject(new NexusError('connection_expired')))
      .catch(codeOf);
    expect(failed).toBe('connection_expired');
    expect(await b.exclusive('oauth2:conn', () => Promise.resolve('b ran'))).toBe('b ran');
    await new Promise((r) => setTimeout(r, 20));
    expect(table.size).toBe(0);
  });

  it('a wait past its bound fails store_unavailable and the refresh never runs', async () => {
    const { table, workers: w } = workers(2, 100);
    const [a, b] = w as [(typeof w)[0], (typeof w)[0]];
    const aIn = gate();
    const aOut = gate();
    const held = a.exclusive('oauth2:conn', async () => {
      aIn.open();
      await aOut.promise;
    });
    await aIn.promise;
    let ran = false;
    const started = Date.now();
    const waited = await b
      .exclusive('oauth2:conn', () => {
        ran = true;
        return Promise.resolve();
      })
      .catch(codeOf);
    expect(waited).toBe('store_unavailable');
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(ran).toBe(false);
    aOut.open();
    await held;
    // The expired ticket is gone: the next ask is granted at once.
    expect(await b.exclusive('oauth2:conn', () => Promise.resolve(1))).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(table.size).toBe(0);
  });

  it('a worker that exits while it holds a lock releases it; its waiting tickets go too', async () => {
    const { table, workers: w } = workers(3);
    const [a, b, c] = w as [(typeof w)[0], (typeof w)[0], (typeof w)[0]];
    const aIn = gate();
    // a's refresh never ends: the worker is killed while it holds the lock.
    void a.exclusive('oauth2:conn', async () => {
      aIn.open();
      await new Promise(() => undefined);
    });
    await aIn.promise;
    // a also waits for a second key behind c.
    const cIn = gate();
    const cOut = gate();
    const cHolds = c.exclusive('oauth2:second', async () => {
      cIn.open();
      await cOut.promise;
    });
    await cIn.promise;
    const aWaits = a.exclusive('oauth2:second', () => Promise.resolve('a ran')).catch(codeOf);
    const bWaits = b.exclusive('oauth2:conn', () => Promise.resolve('b ran'));
    await new Promise((r) => setTimeout(r, 20));
    // kill -9: the primary sees the exit, and the worker's pipe is gone.
    a.cut();
    a.primary.close();
    table.releaseOwner(a.primary);
    expect(await bWaits).toBe('b ran');
    cOut.open();
    await cHolds;
    // a's ticket for the second key was withdrawn, never granted to a dead worker.
    expect(await c.exclusive('oauth2:second', () => Promise.resolve('c again'))).toBe('c again');
    await new Promise((r) => setTimeout(r, 20));
    expect(table.size).toBe(0);
    void aWaits;
  });

  it('a primary that is gone: store_unavailable, the refresh never runs', async () => {
    const { workers: w } = workers(1);
    const [a] = w as [(typeof w)[0]];
    a.cut();
    let ran = false;
    const code = await a
      .exclusive('oauth2:conn', () => {
        ran = true;
        return Promise.resolve();
      })
      .catch(codeOf);
    expect(code).toBe('store_unavailable');
    expect(ran).toBe(false);
  });

  it('a ticket withdrawn while waiting is never granted; a malformed ask is refused', async () => {
    const table = new OAuthLockTable();
    const one = {};
    const two = {};
    await table.acquire(one, 'k', '1');
    const waiting = table.acquire(two, 'k', '1').then(
      () => 'granted',
      (e: unknown) => codeOf(e),
    );
    table.release(two, 'k', '1');
    expect(await waiting).toBe('store_unavailable');
    // A release by another owner with the same ticket number does not free one's lock.
    table.release(two, 'k', '1');
    const three = table.acquire(two, 'k', '2').then(() => 'granted');
    let settled = false;
    void three.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    table.release(one, 'k', '1');
    expect(await three).toBe('granted');
    table.release(two, 'k', '2');
    expect(table.size).toBe(0);

    const { primary, worker } = pipe();
    answerOAuthLocks(primary, table);
    for (const body of [null, { key: 'k' }, { key: '', ticket: '1' }, { key: 'k', ticket: 7 }]) {
      expect(await worker.ask('oauth.lock', body).catch(codeOf)).toBe('internal_error');
    }
    expect(table.size).toBe(0);
  });
});
