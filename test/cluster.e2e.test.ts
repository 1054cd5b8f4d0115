/**
 * Issue 13 end to end: real `nexus up` nodes on one PostgreSQL database (a fresh database
 * per suite, dropped afterwards). One node serves end to end; two nodes behind one public
 * URL share replay protection, revocation and agent changes; each audits into its own
 * chain and `nexus audit verify` checks them all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import {
  createTestDatabase,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

const SECRET = 'cluster-e2e-secret-value-0123456789';

const services = (upstream: TestUpstream) => ({
  echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
});
const agents = { bot: { roles: ['reader'] } };
const policies = [{ id: 'read', allow: { roles: ['reader'], services: ['echo'] } }];

describe('a node on PostgreSQL', () => {
  let db: TestDatabase;
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    db = await createTestDatabase('e2e1');
    upstream = await startUpstream();
    node = await startNode({ store: db.url, services: services(upstream), agents, policies });
    await node.setCredential('echo-token', { value: SECRET });
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
    await db?.drop();
  });

  it('enrolls, forwards a signed request with the credential, and audit verify passes', async () => {
    const agent = await node.enroll('bot');
    try {
      const res = await agent.fetch('echo', '/items/1', { intent: 'read an item' });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).not.toContain(SECRET);
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${SECRET}`);
    } finally {
      agent.close();
    }
    const audit = await node.admin<{ records: { chain?: string; decision?: string }[] }>(
      'GET',
      '/v1/audit?service=echo',
    );
    expect(audit.status).toBe(200);
    expect(audit.body.records.length).toBeGreaterThan(0);
    expect(audit.body.records[0]?.chain).toMatch(/^[A-Za-z0-9_-]+$/);
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code).toBe(0);
    const report = JSON.parse(verify.stdout) as { ok: boolean; count: number; chains: number };
    expect(report).toMatchObject({ ok: true, chains: 1 });
    expect(report.count).toBeGreaterThan(0);
  });

  it('keeps serving after a restart, on a new audit chain, and verify checks both', async () => {
    await node.restart();
    const agent = await node.enroll('bot');
    try {
      expect((await agent.fetch('echo', '/items/2')).status).toBe(200);
    } finally {
      agent.close();
    }
    const verify = await node.cli(['audit', 'verify', '--json']);
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, chains: 2 });
  });
});
