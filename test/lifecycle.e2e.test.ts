/**
 * Node lifecycle end to end: SIGTERM drains in-flight requests and writes a final audit
 * checkpoint; replay protection survives a clean restart and a crash; the SDK renews its
 * lease before expiry by itself.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '@nexus-proxy/protocol';
import { enroll } from '@nexus-proxy/sdk';
import { rawAgent } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

function send(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: u.pathname, headers, agent: false },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('node lifecycle', () => {
  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
    });
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  it('a request accepted before a clean restart cannot be replayed after it', async () => {
    const { lease, key: privateKey } = await rawAgent(node, 'bot');
    const headers = await signRequest({
      method: 'GET',
      url: `${node.proxyUrl}/echo/once`,
      lease,
      key: privateKey,
      intent: '',
    });
    expect((await send(`${node.proxyUrl}/echo/once`, headers)).status).toBe(200);
    await node.restart();
    const replay = await send(`${node.proxyUrl}/echo/once`, headers);
    expect(replay.status).toBe(401);
    expect(JSON.parse(replay.body)).toMatchObject({ code: 'replay_detected' });
  });

  it('after a crash, signatures that may predate the start are refused and the SDK re-signs', async () => {
    const agent = await node.enroll('bot');
    const { lease, key: privateKey } = await rawAgent(node, 'bot');
    const headers = await signRequest({
      method: 'GET',
      url: `${node.proxyUrl}/echo/crash`,
      lease,
      key: privateKey,
      intent: '',
    });
    expect((await send(`${node.proxyUrl}/echo/crash`, headers)).status).toBe(200);
    node.process.kill('SIGKILL');
    await new Promise((r) => node.process.once('exit', r));
    await node.restart();
    const replay = await send(`${node.proxyUrl}/echo/crash`, headers);
    expect(JSON.parse(replay.body)).toMatchObject({ code: 'signature_expired' });
    // The SDK signs again until the proxy's start is behind the signature window.
    expect((await agent.fetch('echo', '/after-crash')).status).toBe(200);
    agent.close();
  });

  it('SIGTERM drains an in-flight request, then writes a final checkpoint', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    upstream.handle(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started ');
      await released;
      res.end('finished');
    });
    const agent = await node.enroll('bot');
    const res = await agent.fetch('echo', '/slow');
    const exited = node.stop();
    await new Promise((r) => setTimeout(r, 300));
    release();
    expect(await res.text()).toBe('started finished');
    expect(await exited).toBe(0);
    agent.close();
    upstream.reset();
    const verify = await node.cli(['audit', 'verify', '--json']);
    const report = JSON.parse(verify.stdout) as { ok: boolean; count: number; checkpoints: number };
    expect(report.ok).toBe(true);
    expect(report.checkpoints).toBeGreaterThanOrEqual(1);
    // The last checkpoint covers the last record: nothing written after it.
    await node.restart();
    const cps = await node.admin<{ checkpoints: { seq: number }[] }>(
      'GET',
      '/v1/audit/checkpoints',
    );
    expect(cps.body.checkpoints.at(-1)?.seq).toBe(report.count);
  });
});

describe('configuration reload', () => {
  it('nexus reload and SIGHUP apply new services and policies without a restart', async () => {
    const upstream = await startUpstream();
    const node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read-echo', allow: { roles: ['reader'], services: ['echo'] } }],
    });
    try {
      const agent = await node.enroll('bot');
      expect(await agent.fetch('second', '/x').catch((e: { code: string }) => e.code)).toBe(
        'service_unknown',
      );
      const config = parse(await readFile(node.configPath, 'utf8')) as Record<string, unknown>;
      config.services = {
        ...(config.services as object),
        second: { upstream: upstream.url, auth: { type: 'none' } },
      };
      config.policies = [{ id: 'read-all', allow: { roles: ['reader'] } }];
      await writeFile(node.configPath, stringify(config));
      const r = await node.cli(['reload', '--json']);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ services: 2, restart_required: [] });
      expect((await agent.fetch('second', '/x')).status).toBe(200);

      // A role taken away by a reload stops counting at once, on the lease already held.
      const withoutRole = parse(await readFile(node.configPath, 'utf8')) as Record<string, unknown>;
      withoutRole.agents = { bot: { roles: [] } };
      await writeFile(node.configPath, stringify(withoutRole));
      expect((await node.cli(['reload'])).code).toBe(0);
      expect(await agent.fetch('second', '/z').catch((e: { code: string }) => e.code)).toBe(
        'policy_denied',
      );
      withoutRole.agents = { bot: { roles: ['reader'] } };
      await writeFile(node.configPath, stringify(withoutRole));
      expect((await node.cli(['reload'])).code).toBe(0);
      expect((await agent.fetch('second', '/x')).status).toBe(200);

      // SIGHUP does the same; an invalid file is refused and the running config stays.
      await writeFile(node.configPath, 'version: 1\nsurprise: true\n');
      node.process.kill('SIGHUP');
      await new Promise((res) => setTimeout(res, 500));
      expect(node.output()).toContain('reload failed');
      expect((await agent.fetch('second', '/y')).status).toBe(200);
      agent.close();
    } finally {
      await node.stop();
      await upstream.close();
    }
  });
});

describe('lease renewal by the SDK', () => {
  it('renews its lease before it expires', async () => {
    const upstream = await startUpstream();
    const node = await startNode({
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [{ id: 'read', allow: { roles: ['reader'] } }],
      overrides: { authority: { lease_ttl: '3s', lease_max_lifetime: '1h', clock_skew: '1s' } },
    });
    try {
      const agent = await enroll({
        authority: node.proxyUrl,
        enrollmentToken: await node.enrollmentToken('bot'),
      });
      const firstJti = agent.claims.jti;
      await new Promise((r) => setTimeout(r, 4500));
      expect(agent.claims.jti).not.toBe(firstJti);
      expect((await agent.fetch('echo', '/still-working')).status).toBe(200);
      agent.close();
    } finally {
      await node.stop();
      await upstream.close();
    }
  });
});
