/**
 * The console state the primary of `nexus up --workers N` holds (issue 13): two workers'
 * pipes to one primary, joined as Node joins them (structured clone, delivered later). A
 * person token minted on one worker is known on the other; a logout on either, or the
 * session's expiry, ends it on both; only its hash crosses the pipe; an OIDC login started
 * on one worker completes on the other, once.
 */
import { describe, expect, it } from 'vitest';
import type { Person } from '../admin/callers.js';
import { IpcPeer } from './ipc-peer.js';
import {
  answerSessions,
  primaryConsoleState,
  workerOidcFlows,
  workerPersonTokens,
  workerSessionTable,
} from './worker-sessions.js';

/** A worker's peer joined to a primary's peer; `sent` records every message on the pipe. */
function pipe(sent: unknown[]): { worker: IpcPeer; primary: IpcPeer } {
  const deliver = (to: () => IpcPeer) => (message: unknown) => {
    sent.push(message);
    const copy = structuredClone(message);
    setImmediate(() => to().receive(copy));
  };
  const worker: IpcPeer = new IpcPeer(deliver(() => primary));
  const primary: IpcPeer = new IpcPeer(deliver(() => worker));
  return { worker, primary };
}

const alice: Person = {
  issuer: 'https://idp.example',
  sub: 'alice',
  name: 'alice@example.org',
  role: 'operator',
  email: 'alice@example.org',
};

function twoWorkers(clock: () => number) {
  const sent: unknown[] = [];
  const state = primaryConsoleState(clock);
  const one = pipe(sent);
  const two = pipe(sent);
  answerSessions(one.primary, state);
  answerSessions(two.primary, state);
  return {
    sent,
    state,
    w1: {
      people: workerPersonTokens(one.worker),
      sessions: workerSessionTable(one.worker),
      flows: workerOidcFlows(one.worker),
    },
    w2: {
      people: workerPersonTokens(two.worker),
      sessions: workerSessionTable(two.worker),
      flows: workerOidcFlows(two.worker),
    },
  };
}

describe('console state held by the primary (workers)', () => {
  it('a person token minted on one worker is known on the other; only its hash crosses the pipe', async () => {
    const { sent, w1, w2 } = twoWorkers(Date.now);
    const token = await w1.people.issue(alice);
    expect(token).toMatch(/^nxp_[A-Za-z0-9_-]{43}$/);
    expect(await w2.people.find(token)).toEqual(alice);
    expect(await w1.people.find(token)).toEqual(alice);
    expect(await w2.people.find(`nxp_${'A'.repeat(43)}`)).toBeUndefined();
    expect(JSON.stringify(sent)).not.toContain(token);
    await w2.people.revoke(token);
    expect(await w1.people.find(token)).toBeUndefined();
  });

  it('a logout on either worker ends the session and its person token on both', async () => {
    const { w1, w2 } = twoWorkers(Date.now);
    const token = await w1.people.issue(alice);
    const { id } = await w1.sessions.create(token, {
      type: 'person',
      name: alice.name,
      role: alice.role,
    });
    expect((await w2.sessions.get(id))?.bearer).toBe(token);
    await w2.sessions.delete(id);
    expect(await w1.sessions.get(id)).toBeUndefined();
    expect(await w1.people.find(token)).toBeUndefined();
    expect(await w2.people.find(token)).toBeUndefined();
  });

  it("a session's expiry in the primary ends its person token; an operator token's session leaves the people alone", async () => {
    let now = 1_000_000;
    const { state, w1, w2 } = twoWorkers(() => now);
    const token = await w1.people.issue(alice);
    const other = await w1.people.issue({ ...alice, sub: 'bob', name: 'bob' });
    const { id } = await w1.sessions.create(token, {
      type: 'person',
      name: alice.name,
      role: alice.role,
    });
    const op = await w2.sessions.create(`nxo_${'x'.repeat(40)}`, {
      type: 'operator_token',
      name: 'ops',
      role: 'admin',
    });
    now += 31 * 60_000; // past the 30-minute idle expiry
    expect(await w2.sessions.get(id)).toBeUndefined();
    expect(await w2.sessions.get(op.id)).toBeUndefined();
    expect(await w2.people.find(token)).toBeUndefined();
    // A token with no session ending is untouched (bob's was never in a session here).
    expect(await w2.people.find(other)).toMatchObject({ sub: 'bob' });
    expect(state.people.size).toBe(1);
  });

  it('an OIDC login started on one worker completes on the other, once', async () => {
    const { w1, w2 } = twoWorkers(Date.now);
    const flow = { state: 's', nonce: 'n', codeVerifier: 'v', createdAt: Date.now() };
    await w1.flows.put('k'.repeat(64), flow);
    expect(await w2.flows.take('k'.repeat(64))).toEqual(flow);
    expect(await w1.flows.take('k'.repeat(64))).toBeUndefined();
    expect(await w2.flows.take('other')).toBeUndefined();
  });
});
