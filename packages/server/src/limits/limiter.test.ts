// The limiter over the in-memory counter store: fixed windows, concurrency slots given back
// on refusal and release, byte budgets, matching by agent/role/service, and the config
// schema's checks (issue 15).
import { describe, expect, it } from 'vitest';
import { createLimiter, isLimitRefusal, type LimitInput } from './limiter.js';
import { MemoryLimitCounterStore } from './counter-store.js';
import { limitsSchema, type LimitRule } from './schema.js';

const input = (over: Partial<LimitInput> = {}): LimitInput => ({
  agent: 'bot',
  roles: ['reader'],
  service: 'gh',
  bytesIn: 0,
  ...over,
});

async function refusal(p: Promise<unknown>) {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (!isLimitRefusal(err)) throw err;
    return { code: err.code, kind: err.kind, limit: err.limit, retryAfter: err.retryAfter };
  }
}

function limiter(rules: unknown[], clock: () => number) {
  const parsed = limitsSchema.parse(rules) as readonly LimitRule[];
  return createLimiter({ rules: () => parsed, store: new MemoryLimitCounterStore(), clock });
}

describe('limiter', () => {
  it('counts requests in fixed windows and says when the window ends', async () => {
    let now = 60_000 * 10 + 15_000; // 15 s into a minute window
    const l = limiter([{ id: 'r', requests: { max: 2, window: '1m' } }], () => now);
    await l.admit(input());
    await l.admit(input());
    expect(await refusal(l.admit(input()))).toEqual({
      code: 'rate_limited',
      kind: 'requests',
      limit: 'r',
      retryAfter: 45,
    });
    // Another agent, its own counter (per: agent).
    expect(await refusal(l.admit(input({ agent: 'other' })))).toBeUndefined();
    now += 45_000;
    expect(await refusal(l.admit(input()))).toBeUndefined();
  });

  it('gives concurrency slots back on release and when another limit refuses', async () => {
    const l = limiter(
      [
        { id: 'c', concurrent: 1 },
        { id: 'r', match: { services: ['gh'] }, requests: { max: 1, window: '1h' } },
      ],
      () => 0,
    );
    const done = await l.admit(input());
    expect((await refusal(l.admit(input({ service: 'x' }))))?.kind).toBe('concurrent');
    done(0);
    done(0); // a second call does not free a slot it does not hold
    // `c` admits, `r` refuses: the slot taken for `c` is given back.
    expect((await refusal(l.admit(input())))?.kind).toBe('requests');
    const next = await l.admit(input({ service: 'x' }));
    expect((await refusal(l.admit(input({ service: 'x' }))))?.kind).toBe('concurrent');
    next(0);
  });

  it('keeps a byte budget of request and response bodies', async () => {
    const l = limiter([{ id: 'b', per: 'all', bytes: { max: 1000, window: '1h' } }], () => 0);
    const done = await l.admit(input({ bytesIn: 400 }));
    done(500);
    expect((await refusal(l.admit(input({ agent: 'z', bytesIn: 101 }))))?.kind).toBe('bytes');
    expect(await refusal(l.admit(input({ agent: 'z', bytesIn: 100 })))).toBeUndefined();
  });

  it.each([
    [{ agents: ['bot'] }, true],
    [{ agents: ['other'] }, false],
    [{ roles: ['admin', 'reader'] }, true],
    [{ roles: ['admin'] }, false],
    [{ services: ['gh'], agents: ['bot'] }, true],
    [{ services: ['slack'] }, false],
  ])('matches %j: %s', async (match, limited) => {
    const l = limiter([{ id: 'm', match, requests: { max: 1, window: '1m' } }], () => 0);
    await l.admit(input());
    expect((await refusal(l.admit(input()))) !== undefined).toBe(limited);
  });

  it.each([
    [[{ id: 'x' }], 'at least one of'],
    [
      [
        { id: 'x', concurrent: 1 },
        { id: 'x', concurrent: 2 },
      ],
      'duplicate limit id',
    ],
    [[{ id: 'x', requests: { max: 1, window: '10ms' } }], 'at least 1s'],
    [[{ id: 'x', bytes: { max: 0, window: '1m' } }], 'positive size'],
    [[{ id: 'x', concurrent: 1, per: 'path' }], 'Invalid option'],
    [[{ id: 'x', concurrent: 1, match: { agents: [] } }], 'must not be empty'],
  ])('refuses the config %j', (rules, message) => {
    const r = limitsSchema.safeParse(rules);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain(message);
  });
});
