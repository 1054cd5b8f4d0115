/**
 * `nexus mcp`: an MCP server on stdio for clients that launch one (desktop apps, agent
 * frameworks), which reaches one or more MCP services through Nexus with agent rights only
 * (docs/mcp.md). Like `nexus run`, it spends a one-time enrollment token, holds the lease
 * key in memory, signs every request and revokes its lease at exit.
 *
 * One service: every message is relayed as is (sampling, progress, notifications
 * included). Several: their tools and prompts are offered as `{service}__{name}` and their
 * resources by URI (tools, resources and prompts only).
 *
 * Intent: a tool call's `--intent-arg` argument (added to every tool's input schema, so
 * the model states why it calls the tool; removed before the call is sent), else
 * `--intent`, else `{method} {name}`. It travels as `_meta["nexus/intent"]`.
 *
 * MUST: stdout carries MCP messages only; notes and warnings go to stderr, never a token.
 * MUST NOT: read the operator token or the master key, or call the admin API.
 */
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  CallToolRequestSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type JSONRPCMessage,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { enroll, mcpFetch, MCP_INTENT_META, type NexusAgent } from '@nexus-proxy/sdk';
import { CliError } from './admin-client.js';
import { DEFAULT_AUTHORITY } from './run.js';

type Env = Readonly<Record<string, string | undefined>>;

export interface McpOptions {
  readonly service: readonly string[];
  readonly authority?: string;
  readonly enrollmentFile?: string;
  readonly agent?: string;
  readonly intent?: string;
  readonly intentArg?: string;
  readonly key: 'ed25519' | 'ecdsa-p256';
}

const SEP = '__';

function tokenOf(opts: McpOptions, env: Env): { token: string; authority?: string } {
  if (opts.enrollmentFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.enrollmentFile, 'utf8').trim();
    } catch {
      throw new CliError(
        `cannot read the enrollment file ${opts.enrollmentFile}`,
        'enrollment_missing',
      );
    }
    if (!text.startsWith('{')) return { token: text };
    try {
      const f = JSON.parse(text) as { enrollment_token?: unknown; authority?: unknown };
      if (typeof f.enrollment_token === 'string' && f.enrollment_token !== '') {
        return {
          token: f.enrollment_token,
          ...(typeof f.authority === 'string' ? { authority: f.authority } : {}),
        };
      }
    } catch {
      // one message for every malformed file, without its content
    }
    throw new CliError(`${opts.enrollmentFile} is not an enrollment file`, 'enrollment_missing');
  }
  const token = env.NEXUS_ENROLLMENT_TOKEN?.trim();
  if (token === undefined || token === '') {
    throw new CliError(
      'no enrollment token: set NEXUS_ENROLLMENT_TOKEN or pass --enrollment-file FILE (the operator makes one with `nexus agent enroll NAME`) (enrollment_missing)',
      'enrollment_missing',
    );
  }
  return { token };
}

/** Moves the intent argument of a tools/call into `_meta["nexus/intent"]`. */
function takeIntent(
  params: { arguments?: Record<string, unknown>; _meta?: Record<string, unknown> } | undefined,
  opts: McpOptions,
): void {
  if (params === undefined) return;
  let intent: string | undefined;
  if (opts.intentArg !== undefined && params.arguments !== undefined) {
    const v = params.arguments[opts.intentArg];
    if (typeof v === 'string' && v !== '') intent = v;
    const { [opts.intentArg]: _drop, ...rest } = params.arguments;
    params.arguments = rest;
  }
  intent ??= opts.intent;
  if (intent !== undefined) params._meta = { ...params._meta, [MCP_INTENT_META]: intent };
}

/** Adds the intent argument to a tool's input schema (optional: a call without it still works). */
function withIntentArg(tool: Tool, opts: McpOptions): Tool {
  if (opts.intentArg === undefined) return tool;
  return {
    ...tool,
    inputSchema: {
      ...tool.inputSchema,
      properties: {
        ...tool.inputSchema.properties,
        [opts.intentArg]: {
          type: 'string',
          description: 'Why you call this tool: your purpose, in one sentence (audited).',
        },
      },
    },
  };
}

function transportTo(agent: NexusAgent, service: string, opts: McpOptions) {
  return new StreamableHTTPClientTransport(new URL(`${agent.proxyUrl}/${service}/`), {
    fetch: mcpFetch(agent, service, {
      intent: (m) =>
        m.intent ??
        opts.intent ??
        (m.name === undefined ? (m.method ?? 'mcp') : `${m.method} ${m.name}`),
    }),
  });
}

/** One service: a message relay between stdio and the service. */
async function relay(agent: NexusAgent, service: string, opts: McpOptions): Promise<void> {
  const stdio = new StdioServerTransport();
  const http = transportTo(agent, service, opts);
  const pending = new Map<string | number, string>();
  const done = new Promise<void>((resolve) => {
    stdio.onclose = resolve;
  });
  // The client closing our stdin ends the session.
  process.stdin.once('end', () => void stdio.close());
  http.onmessage = (m: JSONRPCMessage) => {
    if ('id' in m && m.id !== undefined && ('result' in m || 'error' in m)) {
      const method = pending.get(m.id);
      pending.delete(m.id);
      if ('result' in m && method === 'initialize') {
        const v = (m.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof v === 'string') http.setProtocolVersion(v);
      }
      if ('result' in m && method === 'tools/list') {
        const r = m.result as { tools?: Tool[] };
        if (Array.isArray(r.tools)) r.tools = r.tools.map((t) => withIntentArg(t, opts));
      }
    }
    void stdio.send(m);
  };
  http.onerror = () => undefined;
  stdio.onmessage = (m: JSONRPCMessage) => {
    const request = 'method' in m && 'id' in m ? m : undefined;
    if (request !== undefined) {
      pending.set(request.id, request.method);
      if (request.method === 'tools/call') {
        takeIntent(request.params as Parameters<typeof takeIntent>[0], opts);
      }
    }
    http.send(m).catch(() => {
      if (request === undefined) return;
      pending.delete(request.id);
      void stdio.send({
        jsonrpc: '2.0',
        id: request.id,
        error: {
          code: -32603,
          message: `could not reach the MCP service ${service} through Nexus`,
        },
      });
    });
  };
  await http.start();
  await stdio.start();
  await done;
  // Ends a 2025 session at the server (DELETE); a stateless server answers 405, ignored.
  await http.terminateSession().catch(() => undefined);
  await http.close().catch(() => undefined);
}

/** Several services: one server offering all their tools, resources and prompts. */
async function aggregate(
  agent: NexusAgent,
  services: readonly string[],
  opts: McpOptions,
): Promise<void> {
  const clients = new Map<string, Client>();
  for (const s of services) {
    const c = new Client({ name: 'nexus-mcp', version: '0.1.0' });
    await c.connect(transportTo(agent, s, opts));
    clients.set(s, c);
  }
  const split = (name: string): [Client, string] => {
    const at = name.indexOf(SEP);
    const c = at === -1 ? undefined : clients.get(name.slice(0, at));
    if (c === undefined) throw new McpError(-32602, `unknown name ${name.slice(0, 200)}`);
    return [c, name.slice(at + SEP.length)];
  };
  const resourceOwner = new Map<string, Client>();
  const server = new Server(
    { name: 'nexus-mcp', version: '0.1.0' },
    { capabilities: { tools: {}, resources: {}, prompts: {} } },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const tools: Tool[] = [];
    for (const [s, c] of clients) {
      const r = await c.listTools().catch(() => ({ tools: [] as Tool[] }));
      for (const t of r.tools)
        tools.push(withIntentArg({ ...t, name: `${s}${SEP}${t.name}` }, opts));
    }
    return { tools };
  });
  server.setRequestHandler(CallToolRequestSchema, async (req) => {
    const [c, name] = split(req.params.name);
    const params = { ...req.params, name };
    takeIntent(params, opts);
    return c.callTool(params);
  });
  server.setRequestHandler(ListResourcesRequestSchema, async () => {
    const resources = [];
    for (const c of clients.values()) {
      const r = await c.listResources().catch(() => ({ resources: [] }));
      for (const x of r.resources) {
        resourceOwner.set(x.uri, c);
        resources.push(x);
      }
    }
    return { resources };
  });
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const c = resourceOwner.get(req.params.uri);
    if (c === undefined) throw new McpError(-32002, 'resource not found (list resources first)');
    return c.readResource(req.params);
  });
  server.setRequestHandler(ListPromptsRequestSchema, async () => {
    const prompts = [];
    for (const [s, c] of clients) {
      const r = await c.listPrompts().catch(() => ({ prompts: [] }));
      for (const p of r.prompts) prompts.push({ ...p, name: `${s}${SEP}${p.name}` });
    }
    return { prompts };
  });
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    const [c, name] = split(req.params.name);
    return c.getPrompt({ ...req.params, name });
  });
  const stdio = new StdioServerTransport();
  const done = new Promise<void>((resolve) => {
    stdio.onclose = resolve;
  });
  // The client closing our stdin ends the session.
  process.stdin.once('end', () => void stdio.close());
  await server.connect(stdio);
  await done;
  for (const c of clients.values()) await c.close().catch(() => undefined);
}

/** Runs `nexus mcp` until the client closes stdin. */
export async function serveMcpStdio(
  opts: McpOptions,
  env: Env,
  warn: (line: string) => void,
): Promise<void> {
  if (opts.service.length === 0)
    throw new CliError('name at least one MCP service: --service NAME');
  const { token, authority: fromFile } = tokenOf(opts, env);
  const authority = opts.authority ?? env.NEXUS_AUTHORITY ?? fromFile ?? DEFAULT_AUTHORITY;
  if (!/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(authority)) {
    throw new CliError('--authority must be an http(s) URL, e.g. http://127.0.0.1:7070');
  }
  const agent = await enroll({
    authority,
    enrollmentToken: token,
    keyAlgorithm: opts.key,
    onRenewalError: (e) =>
      warn(`nexus mcp: warning: lease renewal failed for good: ${e.code} (renewal_failed)`),
  });
  try {
    if (opts.agent !== undefined && agent.name !== opts.agent) {
      throw new CliError(
        `the enrollment token is for agent ${agent.name}, not ${opts.agent} (agent_mismatch)`,
        'agent_mismatch',
      );
    }
    // stdin closing ends the session (the client went away).
    if (opts.service.length === 1) await relay(agent, opts.service[0] as string, opts);
    else await aggregate(agent, opts.service, opts);
  } finally {
    try {
      await agent.revoke();
    } catch (err) {
      warn(
        `nexus mcp: warning: could not revoke the lease (${(err as { code?: string }).code ?? 'error'}) (lease_not_revoked)`,
      );
    }
  }
}
