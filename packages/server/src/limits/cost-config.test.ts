// A `cost` limit must be able to count something: the services it names read a cost
// (`services.<name>.cost`), or some service does (issue 15).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.js';

const base = (limit: Record<string, unknown>, cost = true) => ({
  version: 1,
  services: {
    llm: {
      upstream: 'https://api.example.com',
      auth: { type: 'none' },
      ...(cost ? { cost: { json: ['usage.total_tokens'] } } : {}),
    },
    plain: { upstream: 'https://plain.example.com', auth: { type: 'none' } },
  },
  limits: [{ id: 'budget', cost: { max: 10, window: '1h' }, ...limit }],
});

const problems = (input: unknown) => {
  try {
    parseConfig(input, { baseDir: '/tmp' });
    return [];
  } catch (err) {
    return String((err as Error).message)
      .split('\n')
      .filter((l) => l.includes('limits'));
  }
};

describe('cost limits at load', () => {
  it('accepts a budget over services that read a cost', () => {
    const cfg = parseConfig(base({ match: { services: ['llm'] } }), { baseDir: '/tmp' });
    expect(cfg.limits[0]?.cost).toEqual({ max: 10, window: 3_600_000 });
    expect(cfg.services.llm?.cost).toEqual({ json: ['usage.total_tokens'] });
    expect(() => parseConfig(base({}), { baseDir: '/tmp' })).not.toThrow();
  });

  it('refuses a budget naming a service without cost:, or with no such service at all', () => {
    expect(problems(base({ match: { services: ['plain'] } })).join()).toContain(
      'limits[0].match.services[0]',
    );
    expect(problems(base({}, false)).join()).toContain('limits[0].cost');
  });
});
