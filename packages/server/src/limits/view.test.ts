// The console's limits view (issue 15): live counters read back from the counter store
// under the limiter's own keys, per subject, only for subjects with something counted.
import { describe, expect, it } from 'vitest';
import { MemoryLimitCounterStore } from './counter-store.js';
import { createLimiter } from './limiter.js';
import type { LimitRule } from './schema.js';
import { limitsView } from './view.js';

const RULES: LimitRule[] = [
  {
    id: 'bots',
    match: { roles: ['bot'] },
    per: 'agent',
    requests: { max: 5, window: 60_000 },
    concurrent: 2,
  },
  {
    id: 'echo-bytes',
    match: { services: ['echo'] },
    per: 'service',
    bytes: { max: 1000, window: 60_000 },
  },
  { id: 'pair', match: {}, per: 'agent_service', requests: { max: 9, window: 60_000 } },
];

describe('limitsView', () => {
  it('shows what the limiter counted, per subject', async () => {
    const store = new MemoryLimitCounterStore();
    const now = 120_000;
    const limiter = createLimiter({ rules: () => RULES, store, clock: () => now });
    const agents = [
      { name: 'a', roles: ['bot'] },
      { name: 'b', roles: ['bot'] },
      { name: 'human', roles: [] },
    ];
    const input = (agent: string, bytesIn = 0) => ({
      agent,
      roles: agents.find((x) => x.name === agent)?.roles ?? [],
      service: 'echo',
      bytesIn,
    });
    const r1 = await limiter.admit(input('a', 100));
    r1(50); // done: its slot is given back, its response bytes counted
    await limiter.admit(input('a')); // still in flight
    const view = await limitsView({
      rules: RULES,
      store,
      agents,
      services: [{ name: 'echo', credential: 'echo-token' }, { name: 'other' }],
      now,
    });
    const bots = view.limits.find((l) => l.id === 'bots');
    expect(bots).toMatchObject({
      per: 'agent',
      requests: { max: 5, window_seconds: 60 },
      concurrent: 2,
    });
    expect(bots?.counters).toEqual([
      {
        subject: 'agent:a',
        requests: { used: 2, max: 5, resets_at: new Date(180_000).toISOString() },
        concurrent: { in_flight: 1, max: 2 },
      },
    ]);
    expect(view.limits.find((l) => l.id === 'echo-bytes')?.counters).toEqual([
      {
        subject: 'service:echo',
        bytes: { used: 150, max: 1000, resets_at: new Date(180_000).toISOString() },
      },
    ]);
    expect(view.limits.find((l) => l.id === 'pair')?.counters.map((c) => c.subject)).toEqual([
      'a/echo',
    ]);
  });

  it('shows cost budgets per credential, under the keys the limiter counts them', async () => {
    const store = new MemoryLimitCounterStore();
    const now = 120_000;
    const rules: LimitRule[] = [
      {
        id: 'llm-key',
        match: { credentials: ['openai-key'] },
        per: 'credential',
        cost: { max: 1000, window: 60_000 },
      },
    ];
    const limiter = createLimiter({ rules: () => rules, store, clock: () => now });
    // Two services share one API key: their costs add up under the credential.
    for (const service of ['chat', 'embed']) {
      const done = await limiter.admit({
        agent: 'a',
        roles: [],
        service,
        credential: 'openai-key',
        bytesIn: 0,
      });
      done(10, 300);
    }
    const view = await limitsView({
      rules,
      store,
      agents: [{ name: 'a', roles: [] }],
      services: [
        { name: 'chat', credential: 'openai-key' },
        { name: 'embed', credential: 'openai-key' },
        { name: 'other', credential: 'other-key' },
      ],
      now,
    });
    expect(view.limits[0]).toMatchObject({
      id: 'llm-key',
      per: 'credential',
      cost: { max: 1000, window_seconds: 60 },
    });
    expect(view.limits[0]?.counters).toEqual([
      {
        subject: 'credential:openai-key',
        cost: { used: 600, max: 1000, resets_at: new Date(180_000).toISOString() },
      },
    ]);
  });
});
