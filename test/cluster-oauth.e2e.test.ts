/**
 * Issue 13, OAuth connections in a cluster: two real `nexus up` nodes on one PostgreSQL
 * database, a real authorization server (`oidc-provider`) that rotates refresh tokens and
 * refuses (and revokes the grant on) the reuse of a rotated one, and a resource server
 * that verifies its JWT access tokens.
 *
 * - A connect started on node A completes with its callback on node B (the provider
 *   redirects to the admin load balancer, which sends it to B).
 * - Requests on both nodes at once, with the stored access token due for refresh, cause
 *   exactly one refresh: the other node waits for the lock and uses the new token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { startBalancer, type TestBalancer } from './helpers/balancer.js';
import { startNode, type TestNode } from './helpers/node.js';
import {
  startOidc,
  startResourceServer,
  WEB_CLIENT,
  type ResourceServer,
  type TestOidc,
} from './helpers/oidc.js';
import {
  createTestDatabase,
  type TestDatabase,
} from '../packages/server/src/store/test/pg-database.js';

describe('OAuth connections across two nodes (PostgreSQL, oidc-provider)', () => {
  let db: TestDatabase;
  let oidc: TestOidc;
  let rs: ResourceServer;
  let adminLb: TestBalancer;
  let a: TestNode;
  let b: TestNode;
  const agents: NexusAgent[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('oauth');
    let issuer = '';
    rs = await startResourceServer(() => issuer);
    oidc = await startOidc(rs.url);
    issuer = oidc.issuer;
    // The provider redirects to the cluster's admin address, not to one node.
    adminLb = await startBalancer([]);
    const callback = `${adminLb.url}/v1/connections/callback`;
    const services = {
      mail: {
        upstream: rs.url.replace(/\/$/, ''),
        auth: {
          type: 'oauth2_authorization_code',
          credential: 'web-client',
          authorize_url: oidc.authorizeUrl,
          token_url: oidc.tokenUrl,
          scope: 'openid offline_access api:read',
          resource: rs.url,
          authorize_params: { prompt: 'consent' },
          redirect_uri: callback,
        },
      },
    };
    const agentsConfig = { bot: { roles: ['reader'] } };
    const policies = [{ id: 'read', allow: { roles: ['reader'], methods: ['GET'] } }];
    a = await startNode({ store: db.url, services, agents: agentsConfig, policies });
    b = await startNode({ join: a, services, agents: agentsConfig, policies });
    await oidc.setup(callback);
    await a.setCredential('web-client', WEB_CLIENT);
  }, 60_000);

  afterAll(async () => {
    for (const agent of agents) agent.close();
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => a?.stop(),
      () => b?.stop(),
      () => adminLb?.close(),
      () => rs?.close(),
      () => oidc?.close(),
      () => db?.drop(),
    ];
    for (const step of steps) {
      await Promise.resolve()
        .then(step)
        .catch(() => undefined);
    }
  });

  it('a connect started on node A completes with its callback on node B, once', async () => {
    // Issued with a short lifetime: the first requests find the token due for refresh.
    oidc.setAccessTokenTtl(10);
    const start = await a.admin<{ authorize_url: string }>('POST', '/v1/connections/mail', {
      principal: 'alice',
    });
    expect(start.status).toBe(201);
    adminLb.targets = [b.adminUrl];
    const done = await oidc.browse(start.body.authorize_url, 'alice');
    oidc.setAccessTokenTtl(3600);
    expect(done.url.startsWith(`${adminLb.url}/v1/connections/callback?`)).toBe(true);
    expect(done.status).toBe(200);
    expect(done.body).toContain('Connected');
    // The state is spent on every node: the same callback sent to A is refused.
    const again = await fetch(done.url.replace(adminLb.url, a.adminUrl));
    expect(again.status).toBe(403);
    await again.text();
    // Both nodes list the connection.
    for (const node of [a, b]) {
      const list = await node.admin<{ connections: { principal: string }[] }>(
        'GET',
        '/v1/connections?service=mail',
      );
      expect(list.body.connections.map((c) => c.principal)).toEqual(['alice']);
    }
    expect(oidc.counts.authorization_code).toBe(1);
  });

  it('requests on both nodes with a token due for refresh cause exactly one refresh', async () => {
    const onA = await a.enroll('bot', { act: 'alice' });
    const onB = await b.enroll('bot', { act: 'alice' });
    agents.push(onA, onB);
    const before = { ...oidc.counts };
    const burst = [];
    for (let i = 0; i < 6; i++) {
      burst.push(onA.fetch('mail', `/a/${i}`), onB.fetch('mail', `/b/${i}`));
    }
    const answers = await Promise.all(burst);
    for (const res of answers) {
      expect(res.status).toBe(200);
      expect(((await res.json()) as { sub: string }).sub).toBe('alice');
    }
    expect(oidc.counts.refresh_token - before.refresh_token).toBe(1);
    expect(oidc.counts.errors - before.errors).toBe(0);
    // The rotated refresh token was stored once for the cluster: a refresh forced on B
    // (the upstream refuses B's token) spends the new one and succeeds.
    rs.rejectNext(1);
    const forced = await onB.fetch('mail', '/forced');
    expect(forced.status).toBe(200);
    await forced.text();
    expect(oidc.counts.refresh_token - before.refresh_token).toBe(2);
    expect(oidc.counts.errors - before.errors).toBe(0);
    // And a refused token on A never spends a stale refresh token. Two correct outcomes,
    // depending on whether A still holds its decrypted copy of the old access token (the
    // vault reuses one for up to 1 s): A sent the token B stored, it was refused, and A
    // refreshes with the refresh token B stored (3 refreshes); or A sent its stale copy,
    // and under the lock finds the token B stored, newer than the one refused, and retries
    // with it without refreshing (2). A refresh token used twice would be a provider error.
    rs.rejectNext(1);
    const onAAfter = await onA.fetch('mail', '/after');
    expect(onAAfter.status).toBe(200);
    await onAAfter.text();
    expect([2, 3]).toContain(oidc.counts.refresh_token - before.refresh_token);
    expect(oidc.counts.errors - before.errors).toBe(0);
  });
});
