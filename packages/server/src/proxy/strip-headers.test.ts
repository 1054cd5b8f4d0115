// forwardableRawHeaders (the pipeline's, from req.rawHeaders) MUST forward exactly what
// forwardableRequestHeaders does from req.headersDistinct (issue 14): the same names,
// values, duplicates joined in order, Connection-listed and injected names dropped.
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardableRawHeaders, forwardableRequestHeaders } from './strip-headers.js';

let server: ReturnType<typeof createServer>;
let port: number;
let onRequest: (req: IncomingMessage) => void = () => undefined;

beforeAll(async () => {
  server = createServer((req, res) => {
    onRequest(req);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Sends `lines` as the header section of a raw GET and resolves with what node parsed. */
function received(lines: string[]): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    onRequest = resolve;
    const socket = connect(port, '127.0.0.1', () => {
      socket.end(`GET / HTTP/1.1\r\nHost: x\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`);
    });
    socket.on('error', reject);
    socket.on('data', () => undefined);
  });
}

const CASES: { name: string; lines: string[]; injected: string[] }[] = [
  {
    name: 'plain headers',
    lines: ['Accept: */*', 'X-Custom: a', 'Content-Type: text/plain'],
    injected: [],
  },
  {
    name: 'duplicates in mixed case, joined in order',
    lines: [
      'X-Dup: one',
      'x-dup: two',
      'X-DUP: three',
      'Accept: a',
      'Content-Type: x',
      'Content-Type: y',
    ],
    injected: [],
  },
  {
    name: 'Connection-listed names, across several Connection fields and CGI spellings',
    lines: [
      'Connection: keep-alive, X-Secret-Hop',
      'X-Secret-Hop: 1',
      'connection: x_other',
      'X-Other: 2',
      'X-Kept: 3',
    ],
    injected: ['x-api-key'],
  },
  {
    name: 'injected names and their CGI look-alikes',
    lines: [
      'X-Api-Key: agent',
      'X_Api_Key: agent',
      'x_api_key: agent',
      'Authorization: Bearer a',
      'X-Kept: y',
    ],
    injected: ['x-api-key'],
  },
  {
    name: 'always-dropped names and families',
    lines: [
      'X-Forwarded-For: 1.2.3.4',
      'X_Forwarded_Host: h',
      'Nexus-Intent: i',
      'Cookie: c',
      'Range: bytes=0-1',
      'CF-Connecting-IP: 1',
      'Workload-Identity-Token: t',
      'X-Payment-Method: kept',
      '__proto__: p',
    ],
    injected: [],
  },
  {
    name: 'Accept-Encoding limited to decodable codings',
    lines: ['Accept-Encoding: zstd, gzip;q=1', 'accept-encoding: br, *'],
    injected: [],
  },
  {
    name: 'Accept-Encoding with nothing decodable',
    lines: ['Accept-Encoding: zstd'],
    injected: ['authorization'],
  },
];

describe('forwardableRawHeaders', () => {
  for (const c of CASES) {
    it(`forwards what forwardableRequestHeaders does: ${c.name}`, async () => {
      const req = await received(c.lines);
      const fromRaw = forwardableRawHeaders(req.rawHeaders, c.injected);
      const fromDistinct = forwardableRequestHeaders(req.headersDistinct, c.injected);
      expect(fromRaw).toEqual(fromDistinct);
      expect(Object.keys(fromRaw)).toEqual(Object.keys(fromDistinct));
      // Called twice (the name cache warm): the same.
      expect(forwardableRawHeaders(req.rawHeaders, c.injected)).toEqual(fromDistinct);
    });
  }

  it('drops what it must and keeps the rest', async () => {
    const req = await received(CASES[2]!.lines);
    expect(forwardableRawHeaders(req.rawHeaders, ['x-api-key'])).toEqual({ 'x-kept': '3' });
    const dup = await received(CASES[1]!.lines);
    expect(forwardableRawHeaders(dup.rawHeaders, [])['x-dup']).toBe('one, two, three');
  });
});
