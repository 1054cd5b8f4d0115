// TokenCache: freshness with a refresh margin, single-flight, failures not cached,
// invalidation by value, bounded size; the token endpoint client's error codes.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import { expiresInToMs, postTokenRequest, tokenEndpointUrl, TokenCache } from './token-cache.js';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

describe('TokenCache', () => {
  it('reports each fetch (not cache hits) to onFetch, failures too (issue 15 metrics)', async () => {
    const seen: boolean[] = [];
    const cache = new TokenCache({ clock: () => 0, onFetch: (ok) => seen.push(ok) });
    await cache.get('k', () => Promise.resolve({ value: 't', expiresAt: 3600_000 }));
    await cache.get('k', () => Promise.resolve({ value: 'u', expiresAt: 3600_000 }));
    expect(await codeOf(cache.get('j', () => Promise.reject(new Error('down'))))).toBe('not-nexus');
    expect(seen).toEqual([true, false]);
  });

  it('reuses a fresh token and refreshes inside the margin', async () => {
    let now = 1_000_000;
    const cache = new TokenCache({ clock: () => now, refreshMarginMs: 60_000 });
    let n = 0;
    const fetch = () => Promise.resolve({ value: `t${++n}`, expiresAt: now + 3600_000 });
    expect((await cache.get('k', fetch)).value).toBe('t1');
    now += 3600_000 - 61_000;
    expect((await cache.get('k', fetch)).value).toBe('t1');
    now += 2_000;
    expect((await cache.get('k', fetch)).value).toBe('t2');
  });

  it('caps the margin at half the lifetime of short tokens', async () => {
    let now = 0;
    const cache = new TokenCache({ clock: () => now, refreshMarginMs: 60_000 });
    let n = 0;
    const fetch = () => Promise.resolve({ value: `t${++n}`, expiresAt: now + 10_000 });
    await cache.get('k', fetch);
    now = 4_000;
    expect((await cache.get('k', fetch)).value).toBe('t1');
    now = 5_000;
    expect((await cache.get('k', fetch)).value).toBe('t2');
  });

  it('single-flight: concurrent callers share one fetch; failures are not cached', async () => {
    const cache = new TokenCache({ clock: () => 0 });
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fetch = async () => {
      calls++;
      await gate;
      return { value: 'tok', expiresAt: 3600_000 };
    };
    const all = Promise.all(Array.from({ length: 20 }, () => cache.get('k', fetch)));
    release();
    expect((await all).every((t) => t.value === 'tok')).toBe(true);
    expect(calls).toBe(1);

    let fails = 0;
    const failing = () => {
      fails++;
      return Promise.reject(new Error('down'));
    };
    await expect(cache.get('x', failing)).rejects.toThrow();
    await expect(cache.get('x', failing)).rejects.toThrow();
    expect(fails).toBe(2);
  });

  it('invalidate with a value keeps a newer token', async () => {
    const cache = new TokenCache({ clock: () => 0 });
    let n = 0;
    const fetch = () => Promise.resolve({ value: `t${++n}`, expiresAt: 3600_000 });
    await cache.get('k', fetch);
    cache.invalidate('k', 'old');
    expect((await cache.get('k', fetch)).value).toBe('t1');
    cache.invalidate('k', 't1');
    expect((await cache.get('k', fetch)).value).toBe('t2');
  });

  it('is bounded', async () => {
    const cache = new TokenCache({ clock: () => 0, maxEntries: 3 });
    for (let i = 0; i < 10; i++) {
      await cache.get(`k${i}`, () => Promise.resolve({ value: 'v', expiresAt: 3600_000 }));
    }
    expect(cache.size).toBe(3);
  });
});

describe('token endpoint helpers', () => {
  it('token URLs: https, or http to loopback only', () => {
    expect(tokenEndpointUrl.safeParse('https://oauth2.googleapis.com/token').success).toBe(true);
    expect(tokenEndpointUrl.safeParse('http://127.0.0.1:9999/token').success).toBe(true);
    expect(tokenEndpointUrl.safeParse('http://example.com/token').success).toBe(false);
    expect(tokenEndpointUrl.safeParse('https://u:p@example.com/token').success).toBe(false);
    expect(tokenEndpointUrl.safeParse('nope').success).toBe(false);
  });

  it('expires_in to ms, with default and cap', () => {
    expect(expiresInToMs({ expires_in: 3600 }, 1000, 5)).toBe(1000 + 3600_000);
    expect(expiresInToMs({ expires_in: '60' }, 0, 5)).toBe(60_000);
    expect(expiresInToMs({}, 0, 300_000)).toBe(300_000);
    expect(expiresInToMs({ expires_in: 10 ** 9 }, 0, 5, 1000)).toBe(1000);
  });

  it('maps endpoint failures to stable codes and never echoes the body', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/bad') {
        res.statusCode = 400;
        res.end('{"error":"invalid_grant","echo":"SECRET-ASSERTION"}');
      } else if (req.url === '/html') {
        res.end('<html>');
      } else res.end('{"access_token":"abc"}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(await postTokenRequest('t', { url: `${base}/ok`, form: { a: 'b' } })).toEqual({
        access_token: 'abc',
      });
      const bad = postTokenRequest('t', { url: `${base}/bad`, form: {} });
      expect(await codeOf(bad)).toBe('credential_unavailable');
      await bad.catch((e: Error) => expect(e.message).not.toContain('SECRET'));
      expect(await codeOf(postTokenRequest('t', { url: `${base}/html` }))).toBe(
        'credential_unavailable',
      );
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    expect(await codeOf(postTokenRequest('t', { url: base }))).toBe('upstream_unreachable');
  });
});
