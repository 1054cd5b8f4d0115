// The console over TLS (issue 15): the session cookie is `Secure`, and the origin check
// expects `https://`. A real HTTPS listener, a real SQLite store with a real operator token.
import { mkdtempSync } from 'node:fs';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from '../../../../test/helpers/tls.js';
import { createOperatorToken } from '../admin/server.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import { createLogger } from '../util/logger.js';
import { createConsoleHandler } from './handler.js';

describe('the console over TLS', () => {
  let pki: TestPki;
  let store: SqliteStore;
  let server: Server;
  let base = '';
  let token = '';

  function post(
    path: string,
    origin: string,
    body: string,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
    return new Promise((resolve, reject) => {
      const req = request(
        base + path,
        {
          method: 'POST',
          ca: pki.ca.cert,
          headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
        },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, headers: res.headers });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  beforeAll(async () => {
    pki = makeTestPki();
    store = openSqliteStore(join(mkdtempSync(join(tmpdir(), 'nexus-console-')), 'nexus.db'));
    token = (await createOperatorToken(store, 'ops', Date.now())).token;
    const handler = createConsoleHandler({
      store,
      adminUrl: () => undefined,
      clock: Date.now,
      logger: createLogger('silent'),
    });
    server = createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
      void handler(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    await store?.close();
  });

  it('sets a Secure, HttpOnly, SameSite=Strict cookie', async () => {
    const r = await post('/console/login', base, `token=${token}`);
    expect(r.status).toBe(303);
    const attrs = String(r.headers['set-cookie'])
      .split(';')
      .map((a) => a.trim());
    expect(attrs).toEqual(expect.arrayContaining(['Secure', 'HttpOnly', 'SameSite=Strict']));
  });

  it('refuses a revoked operator token', async () => {
    const other = await createOperatorToken(store, 'gone', Date.now());
    await store.revokeOperatorToken(other.id, Date.now());
    const r = await post('/console/login', base, `token=${other.token}`);
    expect(r.status).toBe(401);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('refuses the http:// origin of the same host', async () => {
    const r = await post('/console/login', base.replace('https:', 'http:'), `token=${token}`);
    expect(r.status).toBe(403);
    expect(r.headers['set-cookie']).toBeUndefined();
  });
});
