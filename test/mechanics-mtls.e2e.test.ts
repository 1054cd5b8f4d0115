/**
 * Issue 5 item 7: `mtls` end to end through a spawned `nexus up`. Certificates are made
 * with openssl in the test; the loopback HTTPS upstream requires a client certificate from
 * its CA. A good certificate is accepted (the upstream sees its subject); a missing,
 * rogue or mismatched one fails with a clean error code, and a rotated credential takes
 * effect on the next request. Also covers `services.<name>.tls.ca_file`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent, NexusAgentError } from '@nexus-proxy/sdk';
import { startNode, type TestNode } from './helpers/node.js';
import { makeTestPki, startTlsUpstream, type TestPki, type TlsUpstream } from './helpers/tls.js';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as NexusAgentError).code;
  }
}

describe('mtls end to end', () => {
  let pki: TestPki;
  let upstream: TlsUpstream;
  let node: TestNode;
  let agent: NexusAgent;

  beforeAll(async () => {
    pki = makeTestPki();
    upstream = await startTlsUpstream(pki);
    const mtls = (credential: string, tls?: object) => ({
      upstream: upstream.url,
      auth: { type: 'mtls', credential },
      ...(tls === undefined ? {} : { tls }),
    });
    node = await startNode({
      services: {
        bank: mtls('bank-cert'),
        'bank-cafile': mtls('bank-cert-noca', { ca_file: pki.ca.certFile }),
        'bank-rogue': mtls('bank-rogue'),
        'bank-mismatch': mtls('bank-mismatch'),
        'bank-rotated': mtls('bank-rotated'),
        'bank-nocert': {
          upstream: upstream.url,
          auth: { type: 'none' },
          tls: { ca_file: pki.ca.certFile },
        },
        'bank-untrusted': mtls('bank-cert-noca'),
      },
      agents: { bot: { roles: ['payer'] } },
      policies: [{ id: 'pay', allow: { roles: ['payer'], methods: ['GET', 'POST'] } }],
    });
    const ca = pki.ca.cert;
    await node.setCredential('bank-cert', { cert: pki.client.cert, key: pki.client.key, ca });
    await node.setCredential('bank-cert-noca', { cert: pki.client.cert, key: pki.client.key });
    await node.setCredential('bank-rogue', { cert: pki.rogue.cert, key: pki.rogue.key, ca });
    await node.setCredential('bank-mismatch', { cert: pki.client.cert, key: pki.rogue.key, ca });
    await node.setCredential('bank-rotated', { cert: pki.rogue.cert, key: pki.rogue.key, ca });
    agent = await node.enroll('bot');
  });

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await upstream?.close();
  });

  it('presents the client certificate from the vault; the upstream verifies it', async () => {
    const res = await agent.fetch('bank', '/accounts', { intent: 'read balances' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, client: 'nexus-client', url: '/accounts' });
    const post = await agent.fetch('bank', '/payments', {
      method: 'POST',
      intent: 'pay',
      headers: { 'content-type': 'application/json' },
      body: '{"amount":1}',
    });
    expect(post.status).toBe(200);
    await post.body?.cancel();
    expect(upstream.requests.at(-1)?.clientCn).toBe('nexus-client');
  });

  it('services.<name>.tls.ca_file trusts a private CA for the upstream', async () => {
    const res = await agent.fetch('bank-cafile', '/accounts', { intent: 'read' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ client: 'nexus-client' });
  });

  it('no client certificate: the upstream refuses -> upstream_unreachable', async () => {
    const refused = upstream.refused();
    const seen = upstream.requests.length;
    expect(await codeOf(agent.fetch('bank-nocert', '/accounts', { intent: 'x' }))).toBe(
      'upstream_unreachable',
    );
    expect(upstream.requests.length).toBe(seen);
    expect(upstream.refused()).toBeGreaterThan(refused);
  });

  it('a certificate from another CA: the upstream refuses -> upstream_unreachable', async () => {
    const refused = upstream.refused();
    expect(await codeOf(agent.fetch('bank-rogue', '/accounts', { intent: 'x' }))).toBe(
      'upstream_unreachable',
    );
    expect(upstream.refused()).toBeGreaterThan(refused);
  });

  it('an upstream certificate Nexus cannot verify -> upstream_unreachable', async () => {
    expect(await codeOf(agent.fetch('bank-untrusted', '/accounts', { intent: 'x' }))).toBe(
      'upstream_unreachable',
    );
  });

  it('a key that does not match the certificate -> credential_unavailable, nothing sent', async () => {
    // The previous test's aborted handshake is counted by the server a moment later.
    await new Promise((r) => setTimeout(r, 300));
    const refused = upstream.refused();
    const seen = upstream.requests.length;
    expect(await codeOf(agent.fetch('bank-mismatch', '/accounts', { intent: 'x' }))).toBe(
      'credential_unavailable',
    );
    expect(upstream.requests.length).toBe(seen);
    expect(upstream.refused()).toBe(refused);
    expect(node.output()).not.toContain(pki.rogue.key.split('\n')[1]);
  });

  it('a rotated credential takes effect on the next request (a new pool per version)', async () => {
    expect(await codeOf(agent.fetch('bank-rotated', '/a', { intent: 'x' }))).toBe(
      'upstream_unreachable',
    );
    const r = await node.cli(['credential', 'rotate', 'bank-rotated', '--format', 'json'], {
      stdin: JSON.stringify({ cert: pki.client.cert, key: pki.client.key, ca: pki.ca.cert }),
    });
    expect(r.code).toBe(0);
    const res = await agent.fetch('bank-rotated', '/a', { intent: 'x' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ client: 'nexus-client' });
  });
});
