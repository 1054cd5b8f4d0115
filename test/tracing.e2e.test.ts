/**
 * Issue 15: OpenTelemetry traces end to end. A spawned node with `telemetry.traces` pointed
 * at a real loopback HTTP server acting as the OTLP collector (OTLP/HTTP JSON, decoded
 * here), a recording upstream, the real SDK as the agent. Each request is one trace with a
 * span per pipeline stage; the upstream gets a `traceparent` of that trace (never the
 * agent's, which is only a link); no credential byte is ever exported.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'tracing-e2e-bearer-secret-0123456789abcdef';
const AGENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
const AGENT_PARENT = `00-${AGENT_TRACE}-b7ad6b7169203331-01`;

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: { key: string; value: OtlpValue }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number; message?: string };
}
interface OtlpExport {
  resourceSpans: {
    resource?: { attributes?: { key: string; value: OtlpValue }[] };
    scopeSpans: { spans: OtlpSpan[] }[];
  }[];
}

/** A loopback OTLP/HTTP collector: records every raw export and the spans in it. */
async function startCollector(status = 200) {
  const raw: Buffer[] = [];
  const spans: OtlpSpan[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      raw.push(body);
      contentTypes.push(String(req.headers['content-type']));
      if (req.url === '/v1/traces') {
        const doc = JSON.parse(body.toString('utf8')) as OtlpExport;
        for (const rs of doc.resourceSpans)
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push(s);
      }
      res.statusCode = status;
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    raw,
    spans,
    contentTypes,
    /** The spans of one trace, once its request span has arrived. */
    async trace(traceId: string): Promise<OtlpSpan[]> {
      for (let i = 0; i < 200; i++) {
        const of = spans.filter((s) => s.traceId === traceId);
        if (of.some((s) => s.name.startsWith('nexus.request'))) return of;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`trace ${traceId} was not exported`);
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue === undefined ? v?.boolValue : Number(v.intValue));
};

/** The trace id in a W3C traceparent (`00-<trace>-<parent>-<flags>`). */
const traceIdOf = (tp: unknown) => {
  expect(typeof tp).toBe('string');
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/.exec(tp as string);
  expect(m).not.toBeNull();
  return { traceId: m?.[1] as string, parent: m?.[2] as string, flags: m?.[3] as string };
};

describe('OpenTelemetry traces (issue 15)', () => {
  let collector: Awaited<ReturnType<typeof startCollector>>;
  let upstream: TestUpstream;
  let node: TestNode;
  let bot: NexusAgent;

  beforeAll(async () => {
    collector = await startCollector();
    upstream = await startUpstream();
    node = await startNode({
      services: {
        api: { upstream: upstream.url, auth: { type: 'bearer', credential: 'api-token' } },
      },
      agents: { bot: { roles: ['caller'] } },
      policies: [
        { id: 'reads', allow: { roles: ['caller'], services: ['api'], methods: ['GET', 'POST'] } },
        { id: 'no-admin', deny: { paths: ['/admin/**'] } },
        { id: 'held', approve: { roles: ['caller'], paths: ['/held/**'] }, timeout: '30s' },
      ],
      overrides: {
        limits: [
          { id: 'roomy', match: { agents: ['bot'] }, requests: { max: 1000, window: '1h' } },
        ],
        telemetry: {
          traces: { otlp_endpoint: collector.url, sample_ratio: 1, service_name: 'nexus-e2e' },
        },
      },
    });
    await node.setCredential('api-token', { value: SECRET });
    bot = await node.enroll('bot');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
    await collector?.close();
  });

  it('exports a span per stage and sends the upstream a traceparent of that trace, not the agent’s', async () => {
    upstream.reset();
    const res = await bot.fetch('api', '/items/7', {
      method: 'POST',
      body: JSON.stringify({ n: 1 }),
      headers: {
        'content-type': 'application/json',
        traceparent: AGENT_PARENT,
        tracestate: 'agent=chosen',
      },
      intent: 'trace me',
    });
    expect(res.status).toBe(200);
    const requestId = res.headers.get('nexus-request-id');
    expect(upstream.requests).toHaveLength(1);
    const sent = upstream.requests[0]?.headers ?? {};
    expect(sent.authorization).toBe(`Bearer ${SECRET}`);
    const tp = traceIdOf(sent.traceparent);
    // A new trace from Nexus: the agent's trace id is not continued, its tracestate dropped.
    expect(tp.traceId).not.toBe(AGENT_TRACE);
    expect(tp.flags).toBe('01');
    expect(sent.tracestate).toBeUndefined();

    const spans = await collector.trace(tp.traceId);
    const root = spans.find((s) => s.name.startsWith('nexus.request'));
    expect(root?.name).toBe('nexus.request api');
    expect(root?.parentSpanId ?? '').toBe('');
    // The upstream's parent is the request span.
    expect(tp.parent).toBe(root?.spanId);
    expect(attr(root as OtlpSpan, 'nexus.request_id')).toBe(requestId);
    expect(attr(root as OtlpSpan, 'nexus.service')).toBe('api');
    expect(attr(root as OtlpSpan, 'nexus.agent')).toBe('bot');
    expect(attr(root as OtlpSpan, 'nexus.code')).toBe('ok');
    expect(attr(root as OtlpSpan, 'http.response.status_code')).toBe(200);
    // The agent's traceparent is a link, nothing more.
    expect(root?.links?.map((l) => [l.traceId, l.spanId])).toEqual([
      [AGENT_TRACE, 'b7ad6b7169203331'],
    ]);
    const stages = spans.filter((s) => s !== root);
    expect(stages.map((s) => s.name).sort()).toEqual(
      [
        'nexus.audit',
        'nexus.inject',
        'nexus.limits',
        'nexus.policy',
        'nexus.relay',
        'nexus.upstream',
        'nexus.verify',
      ].sort(),
    );
    for (const s of stages) expect(s.parentSpanId).toBe(root?.spanId);
  });

  it('traces a denial (no upstream span, the error code as status) and an approval wait', async () => {
    upstream.reset();
    const denied = (await bot
      .fetch('api', '/admin/x', { intent: 'look' })
      .catch((e: unknown) => e)) as {
      code?: string;
      requestId?: string;
    };
    expect(denied.code).toBe('policy_denied');
    const deniedId = denied.requestId;
    expect(deniedId).toEqual(expect.any(String));
    const call = bot.fetch('api', '/held/1', { method: 'POST', body: 'x', intent: 'wait' });
    let id: string | undefined;
    for (let i = 0; i < 200 && id === undefined; i++) {
      const r = await node.admin<{ approvals: { id: string }[] }>('GET', '/v1/approvals');
      id = r.body.approvals[0]?.id;
      if (id === undefined) await new Promise((r2) => setTimeout(r2, 40));
    }
    await node.admin('POST', `/v1/approvals/${id}/approve`);
    const held = await call;
    expect(held.status).toBe(200);
    const tp = traceIdOf(upstream.requests[0]?.headers.traceparent);

    const approvalTrace = await collector.trace(tp.traceId);
    expect(approvalTrace.map((s) => s.name)).toContain('nexus.approval');

    let deniedRoot: OtlpSpan | undefined;
    for (let i = 0; i < 200 && deniedRoot === undefined; i++) {
      deniedRoot = collector.spans.find((s) => attr(s, 'nexus.request_id') === deniedId);
      if (deniedRoot === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(attr(deniedRoot as OtlpSpan, 'nexus.code')).toBe('policy_denied');
    expect(deniedRoot?.status?.code).toBe(2); // STATUS_CODE_ERROR
    const deniedSpans = collector.spans.filter((s) => s.traceId === deniedRoot?.traceId);
    expect(deniedSpans.map((s) => s.name).sort()).toEqual(
      ['nexus.limits', 'nexus.policy', 'nexus.request api', 'nexus.verify'].sort(),
    );
  });

  it('exports OTLP/HTTP JSON with the configured service name and no credential byte', () => {
    expect(collector.raw.length).toBeGreaterThan(0);
    expect(new Set(collector.contentTypes)).toEqual(new Set(['application/json']));
    const all = Buffer.concat(collector.raw);
    expect(all.includes(SECRET)).toBe(false);
    expect(all.includes(Buffer.from(SECRET).toString('base64'))).toBe(false);
    // Neither the intent nor the lease nor the agent's signature is exported.
    const text = all.toString('utf8');
    expect(text).not.toContain('trace me');
    expect(text).not.toContain('workload-identity-token');
    expect(text).toContain('"nexus-e2e"');
  });
});

describe('OpenTelemetry traces: the agent cannot force sampling (issue 15)', () => {
  it('with sample_ratio 0, an agent traceparent flagged sampled is neither continued nor exported', async () => {
    const collector = await startCollector();
    const upstream = await startUpstream();
    const node = await startNode({
      services: { api: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['caller'] } },
      policies: [{ id: 'reads', allow: { roles: ['caller'], services: ['api'] } }],
      overrides: { telemetry: { traces: { otlp_endpoint: collector.url, sample_ratio: 0 } } },
    });
    try {
      const bot = await node.enroll('bot');
      for (let i = 0; i < 5; i++) {
        const res = await bot.fetch('api', `/x/${i}`, { headers: { traceparent: AGENT_PARENT } });
        expect(res.status).toBe(200);
      }
      for (const r of upstream.requests) {
        const tp = traceIdOf(r.headers.traceparent);
        expect(tp.traceId).not.toBe(AGENT_TRACE);
        expect(tp.flags).toBe('00'); // Nexus's decision: not sampled
      }
      expect(upstream.requests).toHaveLength(5);
    } finally {
      // Stopping flushes what the exporter holds: nothing was recorded.
      await node.stop();
      await upstream.close();
      await collector.close();
    }
    expect(collector.spans).toEqual([]);
  });
});

describe('OpenTelemetry traces: a failing collector (issue 15)', () => {
  it('never holds up a request: the spans are dropped and the node says so', async () => {
    const collector = await startCollector(400); // refuses every export
    const upstream = await startUpstream();
    const node = await startNode({
      services: { api: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['caller'] } },
      policies: [{ id: 'reads', allow: { roles: ['caller'], services: ['api'] } }],
      overrides: { telemetry: { traces: { otlp_endpoint: collector.url } } },
    });
    try {
      const bot = await node.enroll('bot');
      for (let i = 0; i < 3; i++) expect((await bot.fetch('api', `/x/${i}`)).status).toBe(200);
      for (let i = 0; i < 200 && !node.output().includes('exporting traces'); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(node.output()).toContain(
        'exporting traces to telemetry.traces.otlp_endpoint failed; spans are dropped',
      );
      expect(collector.raw.length).toBeGreaterThan(0);
      expect((await bot.fetch('api', '/after')).status).toBe(200);
    } finally {
      await node.stop();
      await upstream.close();
      await collector.close();
    }
  });
});
