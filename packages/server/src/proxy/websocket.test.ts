import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isWebSocketUpgrade, reasonText, sendableCode } from './websocket.js';

describe('sendableCode', () => {
  it.each([
    [1000, 1000],
    [1001, 1001],
    [1008, 1008],
    [1011, 1011],
    [1004, undefined],
    [1005, undefined],
    [1006, undefined],
    [1015, undefined],
    [999, undefined],
    [2999, undefined],
    [3000, 3000],
    [4999, 4999],
    [5000, undefined],
    [undefined, undefined],
  ])('%s -> %s', (code, sent) => {
    expect(sendableCode(code)).toBe(sent);
  });
});

describe('reasonText', () => {
  it('keeps a short reason', () => expect(reasonText('bye [REDACTED]')).toBe('bye [REDACTED]'));
  it('cuts to 123 bytes at a character boundary', () => {
    const cut = reasonText('é'.repeat(100)); // 200 bytes
    expect(Buffer.byteLength(cut)).toBe(122);
    expect(cut).toBe('é'.repeat(61));
    expect(Buffer.byteLength(reasonText('a'.repeat(300)))).toBe(123);
  });
});

describe('isWebSocketUpgrade', () => {
  const req = (upgrade?: string) => ({ headers: { upgrade } }) as unknown as IncomingMessage;
  it.each([
    ['websocket', true],
    ['WebSocket', true],
    ['h2c, websocket', true],
    ['h2c', false],
    ['websockets', false],
    [undefined, false],
  ])('%s -> %s', (upgrade, expected) => {
    expect(isWebSocketUpgrade(req(upgrade))).toBe(expected);
  });
});
