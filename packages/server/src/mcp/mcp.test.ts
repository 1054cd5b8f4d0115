// Unit tests of the MCP gateway's pure parts (issue 12): strict JSON, message parsing and
// header checks, the policy matcher, and the list filter over chunked JSON and SSE.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { compileMcpMatch } from '../policy/mcp-match.js';
import { parseConfig } from '../config/load.js';
import { compilePolicy } from '../policy/compile.js';
import { policyRuleSchema } from '../policy/rule-schema.js';
import { hasDuplicateKey } from './json.js';
import { parseMcpMessage, type McpTarget } from './message.js';
import { createMcpResponseFilter } from './response.js';

const JSON_CT = { 'content-type': 'application/json' };

function parse(body: unknown, headers: Record<string, string> = {}) {
  const h = { ...JSON_CT, ...headers };
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return parseMcpMessage(h, Object.keys(h), Buffer.from(text));
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('hasDuplicateKey', () => {
  it.each([
    ['{"a":1,"b":2}', false],
    ['{"a":1,"a":2}', true],
    ['{"a":{"b":1},"c":{"b":2}}', false],
    ['{"p":{"name":"x","name":"y"}}', true],
    ['[{"a":1},{"a":1}]', false],
    ['{"k\\"":1,"k\\u0022":2}', true],
    ['{"a":["{\\"a\\":1}","a"],"b":1}', false],
  ])('%s -> %s', (text, dup) => expect(hasDuplicateKey(text)).toBe(dup));
});

describe('parseMcpMessage', () => {
  it('names the tool, resource or prompt a call targets, and digests arguments', () => {
    const t = parse({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'x', arguments: { b: 1, a: 2 } },
    });
    const u = parse({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'x', arguments: { a: 2, b: 1 } },
    });
    expect(t).toMatchObject({ type: 'request', kind: 'tool', name: 'x', protocol: false });
    expect(t.argsDigest).toBe(u.argsDigest);
    expect(
      parse({
        jsonrpc: '2.0',
        id: 'a',
        method: 'resources/subscribe',
        params: { uri: 'file:///x' },
      }),
    ).toMatchObject({ kind: 'resource', name: 'file:///x' });
    expect(
      parse({
        jsonrpc: '2.0',
        id: 2,
        method: 'completion/complete',
        params: { ref: { type: 'ref/prompt', name: 'p' } },
      }),
    ).toMatchObject({ kind: 'prompt', name: 'p' });
    expect(parse({ jsonrpc: '2.0', method: 'notifications/initialized' })).toMatchObject({
      type: 'notification',
      protocol: true,
    });
    expect(parse({ jsonrpc: '2.0', id: 3, result: {} })).toMatchObject({
      type: 'response',
      protocol: true,
    });
    expect(parse({ jsonrpc: '2.0', id: 4, method: 'vendor/run' })).toMatchObject({
      protocol: false,
    });
  });

  it.each([
    ['a batch', '[{"jsonrpc":"2.0","id":1,"method":"ping"}]'],
    ['not JSON', '{'],
    ['no jsonrpc', '{"id":1,"method":"ping"}'],
    ['an object id', '{"jsonrpc":"2.0","id":{},"method":"ping"}'],
    ['a tool without a name', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}'],
    ['array params', '{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}'],
    ['a method with a space', '{"jsonrpc":"2.0","id":1,"method":"tools/ call"}'],
    [
      'a lone surrogate name',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\ud800"}}',
    ],
  ])('refuses %s as mcp_invalid', (_what, body) => {
    expect(codeOf(() => parse(body))).toBe('mcp_invalid');
  });

  it('refuses a wrong content type or charset', () => {
    const ping = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}');
    for (const ct of ['text/plain', 'application/json; charset=utf-16', 'application/jsonx']) {
      const h = { 'content-type': ct };
      expect(codeOf(() => parseMcpMessage(h, Object.keys(h), ping))).toBe('mcp_invalid');
    }
    const ok = { 'content-type': 'Application/JSON; charset="UTF-8"' };
    expect(parseMcpMessage(ok, Object.keys(ok), ping).method).toBe('ping');
  });

  it("leaves tasks/* to explicit rules (the server may hold other agents' tasks)", () => {
    expect(
      parse({ jsonrpc: '2.0', id: 1, method: 'tasks/result', params: { taskId: 't' } }).protocol,
    ).toBe(false);
  });

  const modern = (params: Record<string, unknown>, v = '2026-07-28') => ({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': v } },
  });
  const hdr = (extra: Record<string, string>) => ({
    'mcp-protocol-version': '2026-07-28',
    ...extra,
  });

  it('checks the 2026-07-28 request metadata headers against the body', () => {
    const ok = parse(modern({ name: 'x' }), hdr({ 'mcp-method': 'tools/call', 'mcp-name': 'x' }));
    expect(ok.protocolVersion).toBe('2026-07-28');
    const b64 = Buffer.from('héllo').toString('base64');
    expect(
      parse(
        modern({ name: 'héllo' }),
        hdr({ 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${b64}?=` }),
      ).name,
    ).toBe('héllo');
    for (const [body, headers] of [
      [modern({ name: 'x' }), hdr({ 'mcp-name': 'x' })],
      [modern({ name: 'x' }), hdr({ 'mcp-method': 'tools/call' })],
      [modern({ name: 'x' }), hdr({ 'mcp-method': 'tools/list', 'mcp-name': 'x' })],
      [modern({ name: 'x' }), hdr({ 'mcp-method': 'tools/call', 'mcp-name': 'y' })],
      [modern({ name: 'x' }, '2025-11-25'), hdr({ 'mcp-method': 'tools/call', 'mcp-name': 'x' })],
      [modern({ name: 'x' }), hdr({ 'mcp-method': 'tools/call', 'mcp-name': '=?base64?!!?=' })],
      [modern({ name: 'x' }), { 'mcp-protocol-version': 'latest' }],
    ] as const) {
      expect(codeOf(() => parse(body, headers))).toBe('mcp_header_mismatch');
    }
  });

  it('checks Mcp-Method and Mcp-Name when sent under earlier revisions, requires neither', () => {
    const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x' } };
    expect(parse(call, { 'mcp-protocol-version': '2025-11-25' }).name).toBe('x');
    expect(codeOf(() => parse(call, { 'mcp-name': 'y' }))).toBe('mcp_header_mismatch');
    const h = { ...JSON_CT, 'mcp-method': 'tools/call' };
    const twice = () =>
      parseMcpMessage(h, [...Object.keys(h), 'mcp-method'], Buffer.from(JSON.stringify(call)));
    expect(codeOf(twice)).toBe('mcp_header_mismatch');
  });
});

describe('the mcp matcher of a policy rule', () => {
  const tool = (name: string): McpTarget => ({
    method: 'tools/call',
    kind: 'tool',
    name,
    protocol: false,
  });
  const list: McpTarget = { method: 'tools/list', protocol: true };
  const other: McpTarget = { method: 'vendor/run', protocol: false };

  it.each([
    ['allow without mcp', undefined, 'allow', [true, true, false, false]],
    ['deny without mcp', undefined, 'deny', [true, true, true, true]],
    ['tools glob', { tools: ['search_*'] }, 'allow', [false, false, true, false]],
    ['methods only', { methods: ['tools/*'] }, 'allow', [false, true, true, false]],
    [
      'methods and tools',
      { methods: ['tools/call'], tools: ['s*'] },
      'deny',
      [false, false, true, false],
    ],
    ['other method', { methods: ['vendor/*'] }, 'allow', [false, false, false, true]],
  ] as const)('%s', (_n, match, effect, expected) => {
    const test = compileMcpMatch(match, effect);
    expect([undefined, list, tool('search_docs'), other].map(test)).toEqual(expected);
  });

  it('treats only * as a wildcard', () => {
    const test = compileMcpMatch({ resources: ['file:///a.b/*'] }, 'allow');
    const res = (name: string): McpTarget => ({
      method: 'resources/read',
      kind: 'resource',
      name,
      protocol: false,
    });
    expect(test(res('file:///a.b/x/y'))).toBe(true);
    expect(test(res('file:///aXb/x'))).toBe(false);
  });
});

async function run(
  chunks: string[],
  contentType: string,
  method = 'tools/list',
): Promise<{ out: string; filtered: number; outcome?: string }> {
  const { stream, inspection } = createMcpResponseFilter({
    id: 7,
    method,
    contentType,
    allowed: (t) => t.name !== 'secret',
    maxBytes: 1 << 20,
  });
  const parts: Buffer[] = [];
  for await (const c of Readable.from(chunks.map((c) => Buffer.from(c))).pipe(stream))
    parts.push(c as Buffer);
  return {
    out: Buffer.concat(parts).toString(),
    filtered: inspection.filtered,
    outcome: inspection.outcome,
  };
}

describe('the list filter', () => {
  const listResult = JSON.stringify({
    jsonrpc: '2.0',
    id: 7,
    result: { tools: [{ name: 'ok' }, { name: 'secret' }, { nope: 1 }] },
  });

  it('filters a JSON body split anywhere', async () => {
    const r = await run([listResult.slice(0, 20), listResult.slice(20)], 'application/json');
    expect(JSON.parse(r.out)).toEqual({
      jsonrpc: '2.0',
      id: 7,
      result: { tools: [{ name: 'ok' }] },
    });
    expect(r.filtered).toBe(2);
  });

  it('filters the matching SSE event, split across chunks and CRLF lines; others pass', async () => {
    const other = JSON.stringify({
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { secret: 1 },
    });
    const text = `event: message\r\ndata: ${other}\r\n\r\nid: 1\r\nevent: message\r\ndata: ${listResult}\r\n\r\n`;
    const cut = text.indexOf('secret"}') + 3;
    const r = await run(
      [text.slice(0, cut), text.slice(cut, cut + 1), text.slice(cut + 1)],
      'text/event-stream',
    );
    const events = r.out.split('\n\n').filter((e) => e !== '');
    expect(events[0]).toContain('notifications/progress');
    expect(events[1]).toContain('id: 1');
    expect(events[1]).not.toContain('secret');
    expect(r.filtered).toBe(2);
    expect(r.outcome).toBe('result');
  });

  it('fails closed on a list it cannot read', async () => {
    await expect(
      run(['{"jsonrpc":"2.0","id":7,"result":{"tools":{}}}'], 'application/json'),
    ).rejects.toMatchObject({ code: 'upstream_invalid' });
    await expect(run(['not json'], 'application/json')).rejects.toMatchObject({
      code: 'upstream_invalid',
    });
    expect(() =>
      createMcpResponseFilter({
        id: 1,
        method: 'tools/list',
        contentType: 'text/html',
        allowed: () => true,
        maxBytes: 1,
      }),
    ).toThrow();
  });

  it('notes a tool error and a JSON-RPC error as outcomes', async () => {
    const toolErr = JSON.stringify({
      jsonrpc: '2.0',
      id: 7,
      result: { isError: true, content: [] },
    });
    expect((await run([toolErr], 'application/json', 'tools/call')).outcome).toBe('tool_error');
    const rpcErr = JSON.stringify({ jsonrpc: '2.0', id: 7, error: { code: -32602, message: 'x' } });
    expect((await run([rpcErr], 'application/json', 'tools/call')).outcome).toBe('error');
  });
});

describe('policy with MCP rules', () => {
  const source = (policies: unknown[]) => ({
    services: { tools: { kind: 'mcp' }, api: { kind: 'http' } },
    agents: { bot: { roles: ['r'] } },
    policies: policies.map((p) => policyRuleSchema.parse(p)),
  });
  const input = (mcp?: McpTarget, service = 'tools') => ({
    agent: 'bot',
    roles: ['r'],
    service,
    method: 'POST',
    path: '/',
    intent: 'x',
    now: 0,
    ...(mcp === undefined ? {} : { mcp }),
  });

  it('refuses an mcp matcher on a service that is not kind: mcp', () => {
    expect(() =>
      compilePolicy(source([{ id: 'a', allow: { services: ['api'], mcp: { tools: ['x'] } } }])),
    ).toThrow();
  });

  it('denies a tool by default, allows it by name, lets deny override', () => {
    const policy = compilePolicy(
      source([
        { id: 'speak', allow: { services: ['tools'] } },
        { id: 'tools', allow: { mcp: { tools: ['get_*'] } } },
        { id: 'no', deny: { mcp: { tools: ['get_secret'] } } },
        { id: 'api', allow: { services: ['api'] } },
      ]),
    );
    const call = (name: string): McpTarget => ({
      method: 'tools/call',
      kind: 'tool',
      name,
      protocol: false,
    });
    expect(policy.evaluate(input({ method: 'tools/list', protocol: true })).ruleIds).toEqual([
      'speak',
    ]);
    expect(policy.evaluate(input(call('get_ticket')))).toMatchObject({
      decision: 'allow',
      ruleIds: ['tools'],
    });
    expect(policy.evaluate(input(call('delete_ticket')))).toMatchObject({
      decision: 'deny',
      ruleIds: [],
    });
    expect(policy.evaluate(input(call('get_secret')))).toMatchObject({
      decision: 'deny',
      ruleIds: ['no'],
    });
    expect(policy.explain(input(call('delete_ticket'))).rules[1]).toMatchObject({ failed: 'mcp' });
    // A non-MCP request to an HTTP service is unchanged by MCP rules.
    expect(policy.evaluate(input(undefined, 'api'))).toMatchObject({
      decision: 'allow',
      ruleIds: ['api'],
    });
  });
});

describe('config: services of kind mcp', () => {
  const config = (kind: unknown, policies: unknown[] = []) => ({
    version: 1,
    services: {
      tools: { kind, upstream: 'http://127.0.0.1:9/mcp', auth: { type: 'none' } },
    },
    agents: { bot: { roles: ['r'] } },
    policies,
  });

  it('takes kind: mcp, defaults to http, refuses anything else', () => {
    expect(parseConfig(config('mcp')).services.tools?.kind).toBe('mcp');
    const { kind: _k, ...plain } = config('x').services.tools;
    expect(parseConfig({ ...config('x'), services: { tools: plain } }).services.tools?.kind).toBe(
      'http',
    );
    expect(() => parseConfig(config('grpc'))).toThrow();
  });

  it('validates an mcp matcher: unknown keys and empty lists are refused', () => {
    const rule = (mcp: unknown) => [{ id: 'a', allow: { services: ['tools'], mcp } }];
    expect(parseConfig(config('mcp', rule({ tools: ['get_*'] }))).policies[0]?.match.mcp).toEqual({
      tools: ['get_*'],
    });
    expect(() => parseConfig(config('mcp', rule({ tool: ['x'] })))).toThrow();
    expect(() => parseConfig(config('mcp', rule({ tools: [] })))).toThrow();
    expect(() => parseConfig(config('mcp', rule({})))).toThrow();
  });
});
