/**
 * Issue 10, a hostile or broken upstream, and errors an operator and an agent can act on.
 *
 * - An upstream cannot pose as Nexus: its `Nexus-*` fields (any case) never reach the
 *   agent, and neither the SDK nor `nexus run` takes its answer, however well it imitates
 *   a Nexus problem, for a refusal by Nexus; a "pay once" POST reaches it exactly once.
 * - A malformed answer (garbage, a bad status, conflicting framing, an oversized head) is
 *   502 `upstream_invalid`, not 500; an unreachable upstream says why (DNS, refused, TLS);
 *   an unset credential is named. The problem's `detail` and the audit's `error_detail`
 *   agree and hold no secret.
 * - A body over the limit is `body_too_large` for an SDK agent (refused locally from the
 *   limit the node advertises; or read and discarded by the proxy so the client sees the
 *   413), not `proxy_unreachable`.
 *
 * One real `nexus up`, real loopback upstreams (HTTP, raw TCP, TLS), the real SDK and the
 * built CLI.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enroll, NexusAgentError, type NexusAgent } from '@nexus-proxy/sdk';
import { codeOf } from '../helpers/agents.js';
import { freePort, startNode, type TestNode } from '../helpers/node.js';
import {
  startRawUpstream,
  startUpstream,
  type RawUpstream,
  type TestUpstream,
} from '../helpers/upstream.js';
import { makeTestPki } from '../helpers/tls.js';
import {
  attack,
  codes,
  enrollAttacker,
  everything,
  leaks,
  rawExchange,
  rawRequest,
  signFor,
  statuses,
  type Attacker,
} from './harness.js';

const TOKEN = 'nxs_hostile-Upstream-Token-0123456789abcdef';
const SECRETS = [TOKEN];
const MAX_BODY = 64 * 1024;

/** A Nexus problem as an upstream would forge it. */
function forgedProblem(code: string, status: number): string {
  return JSON.stringify({
    type: `urn:nexus:problem:${code}`,
    title: 'Signature expired',
    status,
    code,
    detail: 'signature window over',
    request_id: 'forged-request-id',
  });
}

interface AuditRow {
  kind: string;
  path?: string;
  decision: string;
  error_code?: string;
  error_detail?: string;
  upstream_status?: number;
}

describe('a hostile or broken upstream (issue 10)', () => {
  let upstream: TestUpstream;
  let raw: RawUpstream;
  let tls: HttpsServer;
  let node: TestNode;
  let agent: NexusAgent;
  let mallory: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    raw = await startRawUpstream();
    const pki = makeTestPki();
    tls = createHttpsServer({ cert: pki.server.cert, key: pki.server.key }, (_req, res) =>
      res.end('tls ok'),
    );
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    const closedPort = await freePort();
    node = await startNode({
      services: {
        hostile: { upstream: upstream.url, auth: { type: 'bearer', credential: 'hostile-token' } },
        raw: { upstream: raw.url, auth: { type: 'bearer', credential: 'hostile-token' } },
        refused: { upstream: `http://127.0.0.1:${closedPort}`, auth: { type: 'none' } },
        nodns: { upstream: 'https://nexus-test.invalid', auth: { type: 'none' } },
        badtls: {
          upstream: `https://127.0.0.1:${(tls.address() as AddressInfo).port}`,
          auth: { type: 'none' },
        },
        unset: { upstream: upstream.url, auth: { type: 'bearer', credential: 'never-set' } },
        nofield: { upstream: upstream.url, auth: { type: 'basic', credential: 'partial' } },
      },
      agents: { bot: { roles: ['caller'] }, mallory: { roles: ['caller'] } },
      policies: [{ id: 'all', allow: { roles: ['caller'], methods: ['*'] } }],
      overrides: { proxy: { max_body: String(MAX_BODY) } },
    });
    await node.setCredential('hostile-token', { value: TOKEN });
    await node.setCredential('partial', { username: 'svc-user' });
    agent = await node.enroll('bot');
    mallory = await enrollAttacker(node, 'mallory');
  });

  afterAll(async () => {
    agent?.close();
    await node?.stop();
    await upstream?.close();
    await raw?.close();
    await new Promise<void>((r) => (tls ? tls.close(() => r()) : r()));
  });

  /**
   * The audit records of one request, oldest first, waiting for the outcome record when
   * one is due (it is written after the response).
   */
  async function audited(requestId: string, kinds: string[]): Promise<AuditRow[]> {
    for (;;) {
      const r = await node.admin<{ records: (AuditRow & { seq: number })[] }>(
        'GET',
        `/v1/audit?request_id=${requestId}`,
      );
      if (r.body.records.length >= kinds.length) {
        const records = [...r.body.records].sort((a, b) => a.seq - b.seq);
        expect(records.map((x) => x.kind)).toEqual(kinds);
        return records;
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  // --- an upstream posing as Nexus -------------------------------------------------------

  /** Answers like a Nexus refusal, with every Nexus field an upstream could forge. */
  function forgeNexus(code: string, status: number): void {
    upstream.handle((_req, res) => {
      res.writeHead(status, [
        ['Content-Type', 'application/problem+json'],
        ['Nexus-Error', code],
        ['nexus-error', code],
        ['NEXUS-REQUEST-ID', 'forged-request-id'],
        ['Nexus-Forwarded', '?0'],
        ['nExUs-DeBuG', 'upstream'],
        ['X-Upstream', 'kept'],
      ]);
      res.end(forgedProblem(code, status));
    });
  }

  it('a forged Nexus-Error: signature_expired does not make the SDK resend a POST', async () => {
    upstream.reset();
    forgeNexus('signature_expired', 401);
    const res = await agent.fetch('hostile', '/charges', {
      method: 'POST',
      body: JSON.stringify({ amount: 100 }),
      headers: { 'content-type': 'application/json' },
      intent: 'pay once',
    });
    // The upstream's answer, as an upstream answer: a Response, not a NexusAgentError.
    expect(res.status).toBe(401);
    expect(res.headers.get('nexus-error')).toBeNull();
    expect(res.headers.get('nexus-forwarded')).toBeNull();
    expect(res.headers.get('nexus-debug')).toBeNull();
    expect(res.headers.get('x-upstream')).toBe('kept');
    // The request id is the proxy's own, not the forged one.
    expect(res.headers.get('nexus-request-id')).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(res.headers.get('nexus-request-id')).not.toBe('forged-request-id');
    expect(((await res.json()) as { code: string }).code).toBe('signature_expired');
    expect(upstream.requests.map((r) => r.method)).toEqual(['POST']);
  });

  for (const [code, status] of [
    ['policy_denied', 403],
    ['replay_detected', 401],
    ['upstream_timeout', 504],
  ] as const) {
    it(`a forged Nexus ${code} problem reaches the SDK as the upstream's ${status}`, async () => {
      upstream.reset();
      forgeNexus(code, status);
      const res = await agent.fetch('hostile', '/forged', { method: 'POST', body: 'x' });
      expect(res.status).toBe(status);
      expect(res.headers.get('nexus-error')).toBeNull();
      expect(upstream.requests).toHaveLength(1);
    });
  }

  it('no upstream Nexus-* field reaches a raw client, in any case', async () => {
    upstream.reset();
    forgeNexus('signature_expired', 401);
    const r = await attack(node, mallory, '/hostile/raw-view', { method: 'POST', body: 'x' });
    expect(r.status).toBe(401);
    const names = r.rawHeaders.filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase());
    // Nexus's own: its request id, and the origin marker it signs (spec §10.4).
    expect(names.filter((n) => n.startsWith('nexus-')).sort()).toEqual([
      'nexus-origin',
      'nexus-request-id',
    ]);
    expect(r.headers['nexus-origin']).toBe('upstream');
    expect(r.headers['nexus-request-id']).not.toBe('forged-request-id');
    expect(upstream.requests).toHaveLength(1);
    expect(leaks(everything(r), SECRETS)).toEqual([]);
  });

  it("a real refusal by Nexus is still the SDK's NexusAgentError", async () => {
    upstream.reset();
    forgeNexus('signature_expired', 401);
    // `unset` is refused by Nexus (its credential is not set), before anything is sent.
    const err = await agent.fetch('unset', '/x', { method: 'POST', body: 'x' }).catch((e) => e);
    expect(err).toBeInstanceOf(NexusAgentError);
    expect((err as NexusAgentError).code).toBe('credential_unavailable');
    expect(upstream.requests).toHaveLength(0);
  });

  it('nexus run: curl gets the forged answer as the upstream answer, POSTed once', async () => {
    upstream.reset();
    forgeNexus('signature_expired', 401);
    const r = await node.runAgent('bot', [
      'sh',
      '-c',
      'curl -s -i -X POST -H "content-type: application/json" -d \'{"amount":100}\' "$NEXUS_PROXY/hostile/charges"',
    ]);
    expect(r.code).toBe(0);
    const [head = '', body = ''] = r.stdout.split(/\r?\n\r?\n/);
    expect(head).toMatch(/^HTTP\/1\.1 401/);
    expect(head.toLowerCase()).not.toContain('nexus-error');
    expect(head.toLowerCase()).toContain('x-upstream: kept');
    expect(head).not.toContain('forged-request-id');
    expect(body).toContain('"request_id":"forged-request-id"');
    expect(upstream.requests.map((q) => q.method)).toEqual(['POST']);
    expect(JSON.parse(upstream.requests[0]!.body.toString())).toEqual({ amount: 100 });
  });

  // --- malformed upstream answers: 502 upstream_invalid ----------------------------------

  for (const [what, bytes] of [
    ['garbage instead of HTTP', 'this is not http\r\n\r\n'],
    ['a two-digit status', 'HTTP/1.1 99 Odd\r\ncontent-length: 0\r\n\r\n'],
    ['a four-digit status', 'HTTP/1.1 1000 Odd\r\ncontent-length: 0\r\n\r\n'],
    ['a status above 599', 'HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n'],
    ['an unrequested protocol switch (101)', 'HTTP/1.1 101 Switching Protocols\r\n\r\n'],
    [
      'two different Content-Length values',
      'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!',
    ],
    [
      'Content-Length with Transfer-Encoding',
      'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    ],
    [
      'an oversized header section',
      `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(100_000)}\r\ncontent-length: 0\r\n\r\n`,
    ],
    [
      'a control character in a header',
      'HTTP/1.1 200 OK\r\nx-bad: a\u0001b\r\ncontent-length: 0\r\n\r\n',
    ],
  ] as const) {
    it(`${what}: 502 upstream_invalid with a detail, audited the same`, async () => {
      raw.answer(bytes);
      const before = raw.heads.length;
      const r = await attack(node, mallory, '/raw/x');
      expect(r.status).toBe(502);
      expect(r.code).toBe('upstream_invalid');
      const problem = JSON.parse(r.body.toString()) as { detail: string; request_id: string };
      expect(problem.detail).toMatch(/upstream/);
      expect(problem.detail).not.toBe('upstream answered something we will not relay');
      expect(raw.heads.length).toBe(before + 1);
      const [, outcome] = await audited(problem.request_id, ['request', 'outcome']);
      expect(outcome).toMatchObject({
        error_code: 'upstream_invalid',
        error_detail: problem.detail,
      });
      expect(leaks(everything(r), SECRETS)).toEqual([]);
    });
  }

  // --- unreachable upstreams and unset credentials: details that say why -----------------

  for (const [service, code, detail] of [
    ['refused', 'upstream_unreachable', /refused the connection/],
    ['nodns', 'upstream_unreachable', /did not resolve \(DNS\)/],
    ['badtls', 'upstream_unreachable', /^TLS/],
    ['unset', 'credential_unavailable', /^credential "never-set" is not set$/],
    ['nofield', 'credential_unavailable', /^credential "partial" has no field "password"$/],
  ] as const) {
    it(`${service}: ${code} whose detail says why, in the problem and the audit`, async () => {
      const r = await attack(node, mallory, `/${service}/x`);
      expect(r.code).toBe(code);
      const problem = JSON.parse(r.body.toString()) as { detail: string; request_id: string };
      expect(problem.detail).toMatch(detail);
      const records = await audited(
        problem.request_id,
        code === 'credential_unavailable' ? ['request'] : ['request', 'outcome'],
      );
      expect(records.at(-1)).toMatchObject({ error_code: code, error_detail: problem.detail });
      expect(leaks(everything(r), SECRETS)).toEqual([]);
    });
  }

  it('the SDK carries the safe detail of a refusal', async () => {
    const err = (await agent.fetch('nodns', '/x').catch((e) => e)) as NexusAgentError;
    expect(err.code).toBe('upstream_unreachable');
    expect(err.detail).toMatch(/did not resolve \(DNS\)/);
  });

  // --- a body over the limit -------------------------------------------------------------

  it('the SDK refuses a body over the advertised limit itself: body_too_large, nothing sent', async () => {
    upstream.reset();
    expect(agent.maxBodyBytes).toBe(MAX_BODY);
    const path = `/too-big-${Date.now()}`;
    expect(
      await codeOf(
        agent.fetch('hostile', path, { method: 'POST', body: 'x'.repeat(MAX_BODY + 1) }),
      ),
    ).toBe('body_too_large');
    const audit = await node.admin<{ records: AuditRow[] }>('GET', '/v1/audit?limit=1000');
    expect(audit.body.records.filter((x) => x.path === path)).toEqual([]);
    expect(upstream.requests).toHaveLength(0);
  });

  it('an SDK agent that does not know the limit gets body_too_large from the proxy, not proxy_unreachable', async () => {
    upstream.reset();
    // Discovery unavailable: no local check, the proxy alone refuses.
    const blind = await enroll({
      authority: node.proxyUrl,
      enrollmentToken: await node.enrollmentToken('bot'),
      autoRenew: false,
      // Without discovery the SDK cannot know the node signs relayed answers: it rejects
      // unsigned ones unless told to accept them (spec §10.4).
      acceptUnsignedResponses: true,
      fetch: (input, init) =>
        String(input).includes('/.well-known/')
          ? Promise.reject(new TypeError('offline'))
          : fetch(input, init),
    });
    expect(blind.maxBodyBytes).toBeUndefined();
    try {
      for (const size of [MAX_BODY + 1, Math.floor(MAX_BODY * 1.5), 2 * MAX_BODY]) {
        expect(
          await codeOf(
            blind.fetch('hostile', '/upload', { method: 'POST', body: 'y'.repeat(size) }),
          ),
          String(size),
        ).toBe('body_too_large');
      }
      // The connection is still usable for the next request.
      expect((await blind.fetch('hostile', '/after')).status).toBe(200);
    } finally {
      blind.close();
    }
    expect(upstream.requests.map((r) => r.url)).toEqual(['/after']);
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`a body over the limit (${framing}) is read and discarded: the client reads the 413 and keeps its connection`, async () => {
      upstream.reset();
      const host = new URL(node.proxyUrl).host;
      const size = Math.floor(MAX_BODY * 1.5);
      const first = Object.entries(
        await signFor(node, mallory, '/hostile/upload', { method: 'POST', body: 'z' }),
      ).filter(([k]) => k !== 'content-length');
      const body = 'z'.repeat(size);
      const second = Object.entries(await signFor(node, mallory, '/hostile/after-upload'));
      const out = await rawExchange(
        node.proxyUrl,
        [
          rawRequest(
            'POST /hostile/upload HTTP/1.1',
            [
              ['Host', host],
              ...first,
              framing === 'chunked'
                ? ['Transfer-Encoding', 'chunked']
                : ['Content-Length', String(size)],
            ],
            framing === 'chunked' ? `${size.toString(16)}\r\n${body}\r\n0\r\n\r\n` : body,
          ),
          rawRequest('GET /hostile/after-upload HTTP/1.1', [
            ['Host', host],
            ...second,
            ['Connection', 'close'],
          ]),
        ],
        { quietMs: 2000 },
      );
      // The same connection answers the 413 and then the next request: it was not closed
      // on the client with its upload unread (a reset), which clients report as a network
      // error instead of the 413.
      expect(statuses(out)).toEqual([413, 200]);
      expect(codes(out)).toEqual(['body_too_large']);
      expect(upstream.requests.map((r) => r.url)).toEqual(['/after-upload']);
    });
  }

  it('a body over twice the limit by its declared length is not read: 413, connection closed', async () => {
    upstream.reset();
    const host = new URL(node.proxyUrl).host;
    const pairs = Object.entries(
      await signFor(node, mallory, '/hostile/huge', { method: 'POST', body: 'z' }),
    ).filter(([k]) => k !== 'content-length');
    const out = await rawExchange(
      node.proxyUrl,
      rawRequest('POST /hostile/huge HTTP/1.1', [
        ['Host', host],
        ...pairs,
        ['Content-Length', String(2 * MAX_BODY + 1)],
      ]),
    );
    expect(statuses(out)).toEqual([413]);
    expect(codes(out)).toEqual(['body_too_large']);
    expect(out.toLowerCase()).toContain('connection: close');
    expect(upstream.requests).toHaveLength(0);
  });

  it('nexus run: curl uploading past the limit reads body_too_large', async () => {
    upstream.reset();
    const r = await node.runAgent('bot', [
      'sh',
      '-c',
      `head -c ${MAX_BODY * 2} /dev/zero | tr '\\0' a | curl -s -X POST --data-binary @- "$NEXUS_PROXY/hostile/up"`,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"code":"body_too_large"');
    expect(upstream.requests).toHaveLength(0);
  });

  it('the audit chain, error_detail records included, verifies; audit query shows the detail', async () => {
    const ok = await node.cli(['audit', 'verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK: \d+ records/);
    const table = await node.cli(['audit', 'query', '--service', 'refused']);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('DETAIL');
    expect(table.stdout).toContain('the upstream refused the connection');
  });

  it('the debug log of the whole file holds no secret', () => {
    expect(leaks(node.output(), SECRETS)).toEqual([]);
    expect(node.output()).not.toContain(node.operatorToken);
    expect(node.output()).not.toContain(mallory.privateD);
  });
});
