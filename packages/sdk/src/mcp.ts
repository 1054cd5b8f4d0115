/**
 * A `fetch` for MCP clients (docs/mcp.md): give it to an MCP client's Streamable HTTP
 * transport (e.g. the official SDK's `StreamableHTTPClientTransport({ fetch })`) and every
 * message goes to one MCP service through the Nexus proxy, signed by the agent, with an
 * intent taken from the message. A refusal by Nexus reaches the client as a JSON-RPC error
 * response, as any MCP server's error would.
 */
import { mcpRefusal, type JsonRpcId } from '@nexus-proxy/protocol';
import type { NexusAgent } from './agent.js';
import { NexusAgentError } from './errors.js';

/** What an intent function sees of one outgoing JSON-RPC message. */
export interface McpOutgoing {
  readonly method?: string;
  /** `params.name` or `params.uri` (the tool, prompt or resource), when present. */
  readonly name?: string;
  /** `params.arguments` of a tools/call or prompts/get. */
  readonly arguments?: Record<string, unknown>;
  /** `params._meta["nexus/intent"]`: an intent the caller attached to the message. */
  readonly intent?: string;
}

/** The `_meta` key an MCP client (or `nexus mcp`) may set to declare a message's intent. */
export const MCP_INTENT_META = 'nexus/intent';

export interface McpFetchOptions {
  /**
   * The Nexus-Intent of a message. Default: the message's `params._meta["nexus/intent"]`,
   * else `{method} {name}` (e.g. `tools/call create_issue`). The result is made printable ASCII and cut to 512 characters.
   */
  readonly intent?: (message: McpOutgoing) => string;
}

const MAX_INTENT = 512;

/** Printable ASCII, at most 512 characters (the Nexus-Intent rules). */
export function intentText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_INTENT);
}

/**
 * What a JSON-RPC message body says for intent and refusals: its method, name, arguments
 * and `_meta["nexus/intent"]`, and its id. Anything unreadable gives an empty message.
 */
export function mcpOutgoing(body: string | undefined): {
  msg: McpOutgoing;
  id: JsonRpcId | undefined;
} {
  try {
    const m = JSON.parse(body ?? '') as Record<string, unknown>;
    const p = (typeof m.params === 'object' && m.params !== null ? m.params : {}) as Record<
      string,
      unknown
    >;
    const name =
      typeof p.name === 'string' ? p.name : typeof p.uri === 'string' ? p.uri : undefined;
    const args =
      typeof p.arguments === 'object' && p.arguments !== null
        ? (p.arguments as Record<string, unknown>)
        : undefined;
    const meta = (typeof p._meta === 'object' && p._meta !== null ? p._meta : {}) as Record<
      string,
      unknown
    >;
    const intent = meta[MCP_INTENT_META];
    const id = typeof m.id === 'string' || typeof m.id === 'number' ? m.id : undefined;
    return {
      msg: {
        // Only a JSON-RPC 2.0 message has a method here (a REST body's `method` field is not one).
        ...(typeof m.method === 'string' && m.jsonrpc === '2.0' ? { method: m.method } : {}),
        ...(name === undefined ? {} : { name }),
        ...(args === undefined ? {} : { arguments: args }),
        ...(typeof intent === 'string' ? { intent } : {}),
      },
      id,
    };
  } catch {
    return { msg: {}, id: undefined };
  }
}

/** The default intent: the method and the name it calls. */
export const defaultMcpIntent = (m: McpOutgoing): string =>
  m.intent ??
  (m.method === undefined ? 'mcp' : m.name === undefined ? m.method : `${m.method} ${m.name}`);

function headersOf(init: RequestInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(init?.headers).forEach((v, k) => (out[k] = v));
  return out;
}

/**
 * A fetch function that sends each request of an MCP client to `service` through Nexus.
 * The URL the client passes is ignored past choosing nothing: every request goes to
 * `/{service}/`.
 *
 * @example
 * const transport = new StreamableHTTPClientTransport(new URL(`${agent.proxyUrl}/tools/`), {
 *   fetch: mcpFetch(agent, 'tools'),
 * });
 */
export function mcpFetch(
  agent: NexusAgent,
  service: string,
  options: McpFetchOptions = {},
): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
  const intentOf = options.intent ?? defaultMcpIntent;
  return async (_input, init) => {
    const body = typeof init?.body === 'string' ? init.body : undefined;
    if (init?.body !== undefined && init.body !== null && body === undefined) {
      throw new TypeError('mcpFetch sends string bodies only (JSON-RPC messages)');
    }
    const { msg, id } = mcpOutgoing(body);
    try {
      return await agent.fetch(service, '/', {
        method: init?.method ?? 'GET',
        headers: headersOf(init),
        ...(body === undefined ? {} : { body }),
        intent: intentText(intentOf(msg)),
        ...(init?.signal ? { signal: init.signal } : {}),
      });
    } catch (err) {
      if (!(err instanceof NexusAgentError) || id === undefined) throw err;
      // A refusal of a request: answered as the JSON-RPC error it is, so the client
      // settles that request instead of failing its transport.
      const refusal = mcpRefusal(id, err.code, err.detail ?? err.code, err.requestId ?? '');
      return new Response(JSON.stringify(refusal), {
        status: 200,
        headers: { 'content-type': 'application/json', 'nexus-error': err.code },
      });
    }
  };
}
