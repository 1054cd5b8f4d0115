/**
 * Issue 11, passthrough tunnels: under `nexus run`, a CONNECT to a host no service owns is
 * refused unless a `passthrough:` rule of nexus.yaml allows it for this agent, host and
 * port. The sidecar asks the node (`POST /v1/agent/passthrough`, signed), which decides and
 * writes a `passthrough` audit record before the tunnel opens; the tunnel is blind: the
 * client's TLS reaches the host (curl trusts only the host's own certificate, not the run
 * CA), and the bytes arrive as the client sent them, with no credential and no Nexus
 * header. The host is a loopback TLS server on 127.0.0.2 (not in NO_PROXY, which names
 * 127.0.0.1, localhost and ::1 only), with a certificate made for that address.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startNode, type TestNode } from './helpers/node.js';

interface Received {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
}

interface PassthroughRow {
  kind: string;
  agent?: string;
  host?: string;
  port?: number;
  decision: string;
  rule_ids?: string[];
  error_code?: string;
}

/** The parts a shell child prints between `--- name` markers. */
function sections(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of stdout.split(/^--- /m).slice(1)) {
    const nl = part.indexOf('\n');
    out[part.slice(0, nl).trim()] = part.slice(nl + 1).trim();
  }
  return out;
}

describe('nexus run, passthrough tunnels (issue 11)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-passthrough-'));
  const certFile = join(dir, 'host.pem');
  const keyFile = join(dir, 'host.key');
  const bodyFile = join(dir, 'body.bin');
  // Bytes a proxy that rewrote anything would change: CR LF, NUL, high bytes, a header-like line.
  const BODY = Buffer.from('line one\r\nAuthorization: Bearer not-a-header\r\n\x00\xff\xfe end');
  const received: Received[] = [];
  let host: Server;
  let port = 0;
  let node: TestNode;

  beforeAll(async () => {
    const gen = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.2',
      '-addext',
      'subjectAltName=IP:127.0.0.2',
    ]);
    expect(gen.status, gen.stderr.toString()).toBe(0);
    writeFileSync(bodyFile, BODY);
    host = createServer(
      { cert: readFileSync(certFile), key: readFileSync(keyFile) },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          received.push({
            method: req.method ?? '',
            url: req.url ?? '',
            rawHeaders: req.rawHeaders,
            body: Buffer.concat(chunks).toString('latin1'),
          });
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('passthrough-host-answer');
        });
      },
    );
    await new Promise<void>((r) => host.listen(0, '127.0.0.2', r));
    port = (host.address() as AddressInfo).port;
    node = await startNode({
      services: {},
      agents: { bot: { roles: ['dev'] }, other: { roles: ['ops'] } },
      policies: [],
      overrides: {
        passthrough: [{ id: 'pkg-index', hosts: ['127.0.0.2'], roles: ['dev'], ports: [port] }],
      },
    });
  });

  afterAll(async () => {
    await node?.stop();
    await new Promise<void>((r) => (host ? host.close(() => r()) : r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const curl = (url: string) =>
    `curl -sS --cacert ${certFile} -X POST --data-binary @${bodyFile} -H "x-agent-own: kept-as-sent" "${url}" 2>&1; echo "exit=$?"`;

  it('tunnels an allowed host blind, refuses other hosts and ports, and audits each decision', async () => {
    received.length = 0;
    const script = [
      `echo "--- allowed"; ${curl(`https://127.0.0.2:${port}/simple/pkg/?q=1`)}`,
      // Same address, a port the rule does not name; another loopback address, no rule.
      `echo "--- other-port"; ${curl(`https://127.0.0.2:${port + 1}/x`)}`,
      `echo "--- other-host"; ${curl(`https://127.0.0.3:${port}/x`)}`,
    ].join('\n');
    const r = await node.runAgent('bot', ['sh', '-c', script]);
    expect(r.code).toBe(0);
    const s = sections(r.stdout);
    // The client verified the host's own certificate (--cacert): the run CA was not used.
    expect(s.allowed).toBe('passthrough-host-answerexit=0');
    expect(received).toHaveLength(1);
    const got = received[0]!;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/simple/pkg/?q=1');
    expect(got.body).toBe(BODY.toString('latin1'));
    const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.sort()).toEqual(
      ['accept', 'content-length', 'content-type', 'host', 'user-agent', 'x-agent-own'].sort(),
    );
    expect(got.rawHeaders).toContain('kept-as-sent');

    for (const k of ['other-port', 'other-host']) {
      expect(s[k]).toMatch(/CONNECT tunnel failed, response 403/);
      expect(s[k]).toMatch(/exit=56$/);
    }
    expect(received).toHaveLength(1);

    const audit = await node.admin<{ records: PassthroughRow[] }>('GET', '/v1/audit?limit=1000');
    // The audit API lists newest first.
    const rows = audit.body.records
      .filter((x) => x.kind === 'passthrough' && x.agent === 'bot')
      .reverse();
    expect(rows.map((x) => [x.host, x.port, x.decision, x.rule_ids, x.error_code])).toEqual([
      ['127.0.0.2', port, 'allow', ['pkg-index'], undefined],
      ['127.0.0.2', port + 1, 'deny', [], 'host_unowned'],
      ['127.0.0.3', port, 'deny', [], 'host_unowned'],
    ]);
  });

  it('refuses an agent the rule does not name, and audits the refusal', async () => {
    received.length = 0;
    const r = await node.runAgent('other', [
      'sh',
      '-c',
      `echo "--- denied"; ${curl(`https://127.0.0.2:${port}/simple/pkg/`)}`,
    ]);
    expect(r.code).toBe(0);
    const s = sections(r.stdout);
    expect(s.denied).toMatch(/CONNECT tunnel failed, response 403/);
    expect(received).toEqual([]);
    const audit = await node.admin<{ records: PassthroughRow[] }>('GET', '/v1/audit?limit=1000');
    const rows = audit.body.records.filter((x) => x.kind === 'passthrough' && x.agent === 'other');
    expect(rows.map((x) => [x.host, x.port, x.decision, x.error_code])).toEqual([
      ['127.0.0.2', port, 'deny', 'host_unowned'],
    ]);
    // The operator's view: `nexus audit query` shows the tunnel's target.
    const q = await node.cli(['audit', 'query', '--agent', 'other']);
    expect(q.code).toBe(0);
    expect(q.stdout).toMatch(
      new RegExp(
        `passthrough\\s+other\\s+-\\s+CONNECT\\s+127\\.0\\.0\\.2:${port}\\s+deny\\s+-\\s+host_unowned`,
      ),
    );
  });

  it('the node endpoint refuses an unsigned request and a malformed target', async () => {
    const unsigned = await fetch(`${node.proxyUrl}/v1/agent/passthrough`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.2', port }),
    });
    expect(unsigned.status).toBe(401);
    const agent = await node.enroll('bot');
    try {
      await expect(agent.passthrough('127.0.0.2', port)).resolves.toBe('pkg-index');
      await expect(agent.passthrough('127.0.0.2:1@evil', port)).rejects.toMatchObject({
        code: 'validation_failed',
      });
      await expect(agent.passthrough('127.0.0.2', 70000)).rejects.toMatchObject({
        code: 'validation_failed',
      });
    } finally {
      await agent.revoke();
    }
  });

  it('a role taken away from the agent stops opening tunnels at once, not at its next lease', async () => {
    const agent = await node.enroll('bot'); // a lease with role dev
    const config = readFileSync(node.configPath, 'utf8');
    try {
      await expect(agent.passthrough('127.0.0.2', port)).resolves.toBe('pkg-index');
      const changed = parse(config) as { agents: Record<string, { roles: string[] }> };
      changed.agents['bot'] = { roles: ['ops'] };
      writeFileSync(node.configPath, stringify(changed));
      expect((await node.admin('POST', '/v1/config/reload')).status).toBe(200);
      // The same lease still names dev; the agent no longer has it.
      await expect(agent.passthrough('127.0.0.2', port)).rejects.toMatchObject({
        code: 'host_unowned',
      });
    } finally {
      writeFileSync(node.configPath, config);
      await node.admin('POST', '/v1/config/reload');
      await agent.revoke();
    }
  });
});
