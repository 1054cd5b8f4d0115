import { describe, expect, it } from 'vitest';
import { NexusError, safeDetail } from '@nexus-proxy/protocol';
import { IpcPeer } from './ipc-peer.js';

/** Two peers joined as a worker's pipe joins them: structured clone, delivered later. */
function pair(): { a: IpcPeer; b: IpcPeer; cut: () => void; sent: unknown[] } {
  let open = true;
  const sent: unknown[] = [];
  const deliver = (to: () => IpcPeer) => (message: unknown) => {
    if (!open) throw new Error('channel closed');
    sent.push(message);
    const copy = structuredClone(message);
    setImmediate(() => to().receive(copy));
  };
  const a: IpcPeer = new IpcPeer(deliver(() => b));
  const b: IpcPeer = new IpcPeer(deliver(() => a));
  return { a, b, cut: () => (open = false), sent };
}

describe('IpcPeer', () => {
  it('answers an ask by topic, both ways, and keeps concurrent asks apart', async () => {
    const { a, b } = pair();
    b.handle('double', (n) => (n as number) * 2);
    a.handle('upper', async (s) => (s as string).toUpperCase());
    const answers = await Promise.all([1, 2, 3].map((n) => a.ask<number>('double', n)));
    expect(answers).toEqual([2, 4, 6]);
    expect(await b.ask('upper', 'x')).toBe('X');
  });

  it("carries a NexusError's code and detail, and hides any other error", async () => {
    const { a, b } = pair();
    b.handle('refuse', () => {
      throw new NexusError('not_found', 'no such approval', { detail: 'no such approval' });
    });
    b.handle('crash', () => {
      throw new Error('secret-bearing internal message');
    });
    const refused = await a.ask('refuse', null).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NexusError);
    expect((refused as NexusError).code).toBe('not_found');
    expect((refused as NexusError).detail).toBe('no such approval');
    const crashed = (await a.ask('crash', null).catch((e: unknown) => e)) as NexusError;
    expect(crashed.code).toBe('internal_error');
    expect(JSON.stringify(crashed) + crashed.message).not.toContain('secret-bearing');
  });

  it("carries what a client would see of an exposed error's message, never a 5xx's", async () => {
    const { a, b } = pair();
    b.handle('exposed', () => {
      throw new NexusError('not_found', 'no pending approval with this id');
    });
    b.handle('hidden', () => {
      throw new NexusError('internal_error', 'store path /var/secret-place');
    });
    const exposed = (await a.ask('exposed', null).catch((e: unknown) => e)) as NexusError;
    const local = new NexusError('not_found', 'no pending approval with this id');
    expect([exposed.code, safeDetail(exposed)]).toEqual([local.code, safeDetail(local)]);
    const hidden = (await a.ask('hidden', null).catch((e: unknown) => e)) as NexusError;
    expect(hidden.code).toBe('internal_error');
    expect(JSON.stringify(hidden) + hidden.message).not.toContain('secret-place');
  });

  it('refuses a topic nobody answers, times out, and fails waiting asks on close', async () => {
    const { a, b, cut } = pair();
    const unknown = (await a.ask('nothing', null).catch((e: unknown) => e)) as NexusError;
    expect(unknown.code).toBe('internal_error');

    b.handle('never', () => new Promise(() => undefined));
    const slow = (await a.ask('never', null, 50).catch((e: unknown) => e)) as NexusError;
    expect(slow.code).toBe('internal_error');
    expect(slow.message).toMatch(/no answer to never/);

    const waiting = a.ask('never', null).catch((e: unknown) => e);
    a.close();
    expect(((await waiting) as NexusError).message).toMatch(/closed before the answer/);

    cut();
    const closed = (await a.ask('double', 1).catch((e: unknown) => e)) as NexusError;
    expect(closed.message).toMatch(/pipe is closed/);
  });

  it('ignores messages of other protocols and answers that nobody waits for', () => {
    const { a } = pair();
    expect(a.receive({ nexusReady: { proxy: 'x' } })).toBe(false);
    expect(a.receive(null)).toBe(false);
    expect(a.receive({ nexusAnswer: { id: 999, body: 1 } })).toBe(true);
  });
});
