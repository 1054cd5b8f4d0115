// Tests of response header scrubbing (scrub/headers.ts): what issue 14 made cheaper (the
// removal set built once per service list, values too short for any secret not scanned)
// still removes and redacts what it did.
import { describe, expect, it } from 'vitest';
import { compileMatcher } from './matcher.js';
import { secretPatterns } from './patterns.js';
import { scrubHeaders } from './headers.js';

const secret = 'hdr-secret-0123456789abcdef';
const patterns = compileMatcher(secretPatterns([secret]));

describe('scrubHeaders (issue 14)', () => {
  it('a name listed in Connection is removed for that response only, not for the next', () => {
    const remove = Object.freeze(['x-internal']);
    const first = scrubHeaders(
      { connection: 'x-hop, keep-alive', 'x-hop': '1', 'x-internal': '2', 'x-keep': '3' },
      { patterns, remove },
    );
    expect(first.headers).toEqual({ 'x-keep': '3' });
    expect(first.removed.sort()).toEqual(['connection', 'x-hop', 'x-internal']);
    // The cached set for `remove` was not changed by the first response's Connection.
    const second = scrubHeaders({ 'x-hop': '1', 'x-internal': '2' }, { patterns, remove });
    expect(second.headers).toEqual({ 'x-hop': '1' });
    const third = scrubHeaders({ 'x-hop': '1', connection: 'close' }, { patterns });
    expect(third.headers).toEqual({ 'x-hop': '1' });
  });

  it('values shorter than the shortest secret pass as they are; a secret in any is redacted', () => {
    const short = 'x'.repeat(secret.length - 1);
    const r = scrubHeaders(
      {
        'x-short': short,
        'x-utf8': 'ä'.repeat(14), // 14 characters, 28 bytes in UTF-8: scanned
        'x-plain': secret,
        'x-b64': Buffer.from(secret).toString('base64'),
        'x-list': ['a', `Bearer ${secret}`],
      },
      { patterns, statusText: `OK ${secret}` },
    );
    expect(r.headers).toEqual({
      'x-short': short,
      'x-utf8': 'ä'.repeat(14),
      'x-plain': '[REDACTED]',
      'x-b64': '[REDACTED]',
      'x-list': ['a', 'Bearer [REDACTED]'],
    });
    expect(r.statusText).toBe('OK [REDACTED]');
    expect(r.count).toBe(4);
  });
});
