import { describe, expect, it } from 'vitest';
import { createReplayCache } from './replay-cache.js';

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('replay cache', () => {
  it('rejects a nonce seen twice for the same lease, accepts it for another lease', () => {
    let now = 1_000_000;
    const cache = createReplayCache({ maxEntries: 10, skewSeconds: 5, clock: () => now });
    cache.checkAndRecord('lease-a', 'nonce-1', 1030);
    expect(codeOf(() => cache.checkAndRecord('lease-a', 'nonce-1', 1030))).toBe('replay_detected');
    cache.checkAndRecord('lease-b', 'nonce-1', 1030);
    now += 10_000;
    expect(codeOf(() => cache.checkAndRecord('lease-a', 'nonce-1', 1030))).toBe('replay_detected');
  });

  it('forgets entries only after expires + skew', () => {
    let now = 1_000_000;
    const cache = createReplayCache({ maxEntries: 10, skewSeconds: 5, clock: () => now });
    cache.checkAndRecord('l', 'n', 1010);
    now = 1_015_000;
    expect(codeOf(() => cache.checkAndRecord('l', 'n', 1010))).toBe('replay_detected');
    now = 1_017_000;
    cache.checkAndRecord('other', 'x', 1070);
    expect(cache.size).toBe(1);
  });

  it('refuses new entries when full of live ones instead of evicting', () => {
    const cache = createReplayCache({ maxEntries: 2, skewSeconds: 5, clock: () => 1_000_000 });
    cache.checkAndRecord('l', 'a', 1050);
    cache.checkAndRecord('l', 'b', 1050);
    expect(codeOf(() => cache.checkAndRecord('l', 'c', 1050))).toBe('rate_limited');
    expect(codeOf(() => cache.checkAndRecord('l', 'a', 1050))).toBe('replay_detected');
  });
});
