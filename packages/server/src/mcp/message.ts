/**
 * Reads the one JSON-RPC message an agent POSTs to an MCP service (docs/mcp.md): strict
 * JSON, a single message (no batch), the MCP request metadata headers checked against the
 * body, and what policy decides on: the method and, for the calls that name something, the
 * tool, resource or prompt.
 *
 * MUST: policy decides on the body, the bytes the upstream executes; the headers only ever
 * make a request fail (a mismatch is refused, never trusted). MUST: a message whose
 * reading could differ between Nexus and the upstream (duplicate keys, a batch) is refused.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { NexusError, type JsonRpcId } from '@nexus-proxy/protocol';
import { canonicalize } from '../audit/canonical-json.js';
import { sha256Hex } from '../util/ids.js';
import { parseStrictJson } from './json.js';

/** What a named MCP call names. */
export type McpKind = 'tool' | 'resource' | 'prompt';

/** The MCP side of one request, as policy and the audit see it. */
export interface McpTarget {
  /** The JSON-RPC method; absent for a JSON-RPC response (to a server's request). */
  readonly method?: string;
  /** Set for the calls that name a tool, resource or prompt. */
  readonly kind?: McpKind;
  /** The tool or prompt name, or the resource URI. */
  readonly name?: string;
  /**
   * A protocol message every allow rule of the service admits (initialize, ping, the list
   * methods, notifications, responses): not a call of anything, and its results are filtered.
   */
  readonly protocol: boolean;
}

/** One parsed JSON-RPC message. */
export interface McpMessage extends McpTarget {
  readonly type: 'request' | 'notification' | 'response';
  /** The request id (requests and responses). */
  readonly id?: JsonRpcId;
  /** `sha-256:` hex of the canonical JSON of the call's arguments (tools/call, prompts/get). */
  readonly argsDigest?: string;
  /** The `MCP-Protocol-Version` header, when sent and valid. */
  readonly protocolVersion?: string;
}

/**
 * Methods that call nothing: any allow rule of an MCP service admits them (a rule's `mcp`
 * block is needed only for tools, resources, prompts and other methods). The list methods
 * are here because their results are filtered by policy.
 */
export const PROTOCOL_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'server/discover',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'prompts/list',
  'logging/setLevel',
  'subscriptions/listen',
  // Not `tasks/*`: every agent reaches the upstream under the one injected credential, so
  // the server's task list and results may hold other agents' calls. They need a rule's
  // `mcp.methods`.
]);

/** The first revision whose request metadata headers are required (SEP-2243). */
export const HEADERS_REQUIRED_FROM = '2026-07-28';

/** Methods whose `Mcp-Name` header is required from {@link HEADERS_REQUIRED_FROM}. */
const NAME_REQUIRED: ReadonlySet<string> = new Set(['tools/call', 'resources/read', 'prompts/get']);

const META_VERSION = 'io.modelcontextprotocol/protocolVersion';
const MAX_METHOD = 256;
const MAX_NAME = 4096;
const METHOD_RE = /^[\x21-\x7e]+$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const invalid = (detail: string) => new NexusError('mcp_invalid', undefined, { detail });
const mismatch = (detail: string) => new NexusError('mcp_header_mismatch', undefined, { detail });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks what an MCP service accepts outside the body: its endpoint only (the upstream URL
 * itself, so no other path of the upstream's host is reachable past tool policy), POST
 * (a message), GET (the 2025 revisions' stream for server messages) and DELETE (ending a
 * 2025 session); no stream resumption.
 */
export function checkMcpTransport(
  method: string,
  rawPath: string,
  headers: IncomingHttpHeaders,
): void {
  if (rawPath !== '' && rawPath !== '/') {
    throw invalid('an MCP service is reached at its root only: /{service} or /{service}/');
  }
  if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
    throw invalid('an MCP endpoint takes POST, GET and DELETE');
  }
  // A resumed stream replays earlier messages, list results included, past the filter.
  if (headers['last-event-id'] !== undefined) {
    throw invalid('resuming an MCP stream (Last-Event-ID) is not supported through Nexus');
  }
}

/** Decodes the Base64 sentinel form (`=?base64?...?=`) of an `Mcp-Name` value. */
export function decodeHeaderValue(value: string): string {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(value);
  if (m === null) {
    if (value.startsWith('=?base64?')) throw mismatch('Mcp-Name has a malformed Base64 value');
    return value;
  }
  const bytes = Buffer.from(m[1] ?? '', 'base64');
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return text;
}

function single(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  // Node joins repeated fields with ", "; a repeat of these fields is refused by the caller
  // through the raw count.
  return Array.isArray(v) ? v.join(', ') : v;
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name === '') throw invalid(`${what} must be a non-empty string`);
  if (name.length > MAX_NAME) throw invalid(`${what} is longer than ${MAX_NAME} characters`);
  if (LONE_SURROGATE.test(name)) throw invalid(`${what} is not well-formed Unicode`);
  return name;
}

function argsDigest(args: unknown): string {
  try {
    return `sha-256:${sha256Hex(canonicalize(args ?? {}))}`;
  } catch {
    throw invalid(
      'the arguments hold a value outside plain JSON (a non-finite number or a lone surrogate)',
    );
  }
}

/** The tool, resource or prompt a request names, if any. */
function named(
  method: string,
  params: Record<string, unknown> | undefined,
): Pick<McpMessage, 'kind' | 'name' | 'argsDigest'> {
  const p = params ?? {};
  switch (method) {
    case 'tools/call':
      return {
        kind: 'tool',
        name: checkName(p.name, 'params.name'),
        argsDigest: argsDigest(p.arguments),
      };
    case 'prompts/get':
      return {
        kind: 'prompt',
        name: checkName(p.name, 'params.name'),
        argsDigest: argsDigest(p.arguments),
      };
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return { kind: 'resource', name: checkName(p.uri, 'params.uri') };
    case 'completion/complete': {
      const ref = p.ref;
      if (isObject(ref) && ref.type === 'ref/prompt')
        return { kind: 'prompt', name: checkName(ref.name, 'params.ref.name') };
      if (isObject(ref) && ref.type === 'ref/resource')
        return { kind: 'resource', name: checkName(ref.uri, 'params.ref.uri') };
      throw invalid('completion/complete needs params.ref of type ref/prompt or ref/resource');
    }
    default:
      return {};
  }
}

/**
 * The policy target of an MCP call given by method and name (for `nexus policy explain`):
 * the same kinds as a parsed message.
 *
 * @example mcpTarget('tools/call', 'get_ticket') // { method, kind: 'tool', name, protocol: false }
 */
export function mcpTarget(method: string, name?: string): McpTarget {
  const params =
    method === 'completion/complete'
      ? { ref: { type: 'ref/prompt', name } }
      : { name, uri: name, arguments: {} };
  const target = name === undefined ? {} : named(method, params);
  return {
    method,
    ...target,
    protocol:
      target.kind === undefined &&
      (PROTOCOL_METHODS.has(method) || method.startsWith('notifications/')),
  };
}

/**
 * Parses and checks one POSTed MCP message.
 *
 * @param rawHeaderNames `req.rawHeaders` names, lower-cased: a metadata header sent twice
 *   is refused (two values cannot both match the body).
 * @throws NexusError `mcp_invalid` (not one JSON-RPC 2.0 message, a bad content type, a
 *   name that is not a string) or `mcp_header_mismatch` (a metadata header missing where
 *   the revision requires it, malformed, or not matching the body).
 */
export function parseMcpMessage(
  headers: IncomingHttpHeaders,
  rawHeaderNames: readonly string[],
  body: Buffer,
): McpMessage {
  const [media = '', ...params] = (single(headers, 'content-type') ?? '').split(';');
  if (media.trim().toLowerCase() !== 'application/json') {
    throw invalid('an MCP message is sent as application/json');
  }
  // Another charset would let the upstream read other characters than Nexus did.
  for (const p of params) {
    const [k = '', v = ''] = p.split('=');
    if (
      k.trim().toLowerCase() === 'charset' &&
      v.trim().replace(/"/g, '').toLowerCase() !== 'utf-8'
    ) {
      throw invalid('an MCP message is UTF-8 (charset=utf-8 or none)');
    }
  }
  for (const h of ['mcp-protocol-version', 'mcp-method', 'mcp-name']) {
    if (rawHeaderNames.filter((n) => n === h).length > 1)
      throw mismatch(`${h} is sent more than once`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw invalid('the body is not UTF-8');
  }
  const msg = parseStrictJson(text);
  if (Array.isArray(msg))
    throw invalid('a JSON-RPC batch is not accepted: send one message per request');
  if (!isObject(msg)) throw invalid('the body is not a JSON-RPC message (an object)');
  if (msg.jsonrpc !== '2.0') throw invalid('jsonrpc must be "2.0"');

  const hasId = Object.hasOwn(msg, 'id');
  const id = msg.id;
  if (hasId && !(typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id)))) {
    throw invalid('id must be a string or an integer');
  }
  try {
    return readMessage(msg, hasId, id as JsonRpcId | undefined, headers);
  } catch (err) {
    // The refusal answers the request by its id, as the revision's examples do.
    if (hasId && err instanceof NexusError) Object.assign(err, { rpcId: id });
    throw err;
  }
}

function readMessage(
  msg: Record<string, unknown>,
  hasId: boolean,
  id: JsonRpcId | undefined,
  headers: IncomingHttpHeaders,
): McpMessage {
  const version = single(headers, 'mcp-protocol-version');
  if (version !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(version)) {
    throw mismatch('MCP-Protocol-Version is not a protocol revision (YYYY-MM-DD)');
  }
  const headerMethod = single(headers, 'mcp-method');
  const headerName = single(headers, 'mcp-name');

  if (!Object.hasOwn(msg, 'method')) {
    // A response to a server's request (sampling, elicitation, roots: 2025 revisions).
    if (!hasId) throw invalid('a message without a method must be a response with an id');
    if (Object.hasOwn(msg, 'result') === Object.hasOwn(msg, 'error')) {
      throw invalid('a JSON-RPC response has exactly one of result and error');
    }
    if (headerMethod !== undefined || headerName !== undefined) {
      throw mismatch('Mcp-Method or Mcp-Name is sent with a JSON-RPC response');
    }
    return {
      type: 'response',
      id: id ?? null,
      protocol: true,
      ...(version === undefined ? {} : { protocolVersion: version }),
    };
  }
  const method = msg.method;
  if (typeof method !== 'string' || method.length > MAX_METHOD || !METHOD_RE.test(method)) {
    throw invalid(`method must be a string of at most ${MAX_METHOD} visible ASCII characters`);
  }
  if (msg.params !== undefined && !isObject(msg.params)) throw invalid('params must be an object');
  const params = msg.params as Record<string, unknown> | undefined;
  const target = named(method, params);

  // The request metadata headers (2026-07-28, Streamable HTTP "Request Metadata"): required
  // from that revision on, checked whenever sent.
  const modern = version !== undefined && version >= HEADERS_REQUIRED_FROM;
  if (modern && hasId) {
    if (headerMethod === undefined) throw mismatch('Mcp-Method is required from MCP 2026-07-28');
    if (NAME_REQUIRED.has(method) && headerName === undefined) {
      throw mismatch('Mcp-Name is required for this method from MCP 2026-07-28');
    }
    const meta = params?._meta;
    const bodyVersion = isObject(meta) ? meta[META_VERSION] : undefined;
    if (bodyVersion !== version) {
      throw mismatch(`MCP-Protocol-Version does not match params._meta["${META_VERSION}"]`);
    }
  }
  if (headerMethod !== undefined && headerMethod !== method) {
    throw mismatch('Mcp-Method does not match the body method');
  }
  if (headerName !== undefined) {
    const bodyName = typeof params?.name === 'string' ? params.name : params?.uri;
    if (decodeHeaderValue(headerName) !== bodyName) {
      throw mismatch('Mcp-Name does not match the body (params.name or params.uri)');
    }
  }
  return {
    type: hasId ? 'request' : 'notification',
    ...(hasId ? { id: id ?? null } : {}),
    method,
    ...target,
    protocol:
      target.kind === undefined &&
      (PROTOCOL_METHODS.has(method) || method.startsWith('notifications/')),
    ...(version === undefined ? {} : { protocolVersion: version }),
  };
}
