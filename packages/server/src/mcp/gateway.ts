/**
 * The MCP side of one proxied request to a service of kind `mcp` (docs/mcp.md). The
 * pipeline stays the one pipeline (verify, decide, record, inject, forward, scrub); this
 * object adds what MCP needs at its steps: read the JSON-RPC message after the digest
 * check, give policy the method and the tool, resource or prompt, add the MCP fields to the
 * audit records, filter list results before the redactor, and answer refusals as JSON-RPC
 * errors.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { mcpRefusal, safeDetail, type JsonRpcId, type NexusError } from '@nexus-proxy/protocol';
import { checkMcpTransport, parseMcpMessage, type McpMessage, type McpTarget } from './message.js';
import { sendRefusal } from '../proxy/problem.js';
import { createMcpResponseFilter, isFilteredList, type McpInspection } from './response.js';

/** Most bytes of one upstream JSON body or SSE event held to filter or inspect it. */
export const MCP_INSPECT_MAX_BYTES = 32 * 1024 * 1024;

/** The `mcp` field of an audit record. */
export interface McpAuditFields {
  /** `request`, `notification` or `response` (a POSTed JSON-RPC message); absent for GET/DELETE. */
  rpc?: McpMessage['type'];
  method?: string;
  /** The tool or prompt name, or the resource URI, for a call that names one. */
  name?: string;
  /** `sha-256:` hex of the canonical JSON of the arguments (tools/call, prompts/get). */
  args_digest?: string;
  /** The `MCP-Protocol-Version` the agent sent. */
  protocol_version?: string;
  /** Outcome record: `result`, `tool_error` or `error`, when the response was read. */
  outcome?: McpInspection['outcome'];
  /** Outcome record: the JSON-RPC error code with `error`. */
  rpc_error?: number;
  /** Outcome record: list entries removed by policy. */
  filtered?: number;
}

/** One request to an MCP service. */
export class McpExchange {
  #message: McpMessage | undefined;
  #decide: ((target: McpTarget) => boolean) | undefined;
  #inspection: McpInspection | undefined;
  #posted = false;

  /**
   * Checks the transport (path, method) and parses a POSTed message. Called once the body
   * is read and its digest verified, before replay and policy.
   */
  inspect(req: IncomingMessage, rawPath: string, body: Buffer): void {
    const method = req.method ?? 'GET';
    this.#posted = method === 'POST';
    checkMcpTransport(method, rawPath, req.headers);
    if (!this.#posted) return;
    const names = req.rawHeaders.filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase());
    this.#message = parseMcpMessage(req.headers, names, body);
  }

  /** What policy decides on (undefined: a GET or DELETE, no MCP message). */
  get target(): McpTarget | undefined {
    return this.#message;
  }

  /** Policy for one would-be call, as the request's own decision was made (agent, intent, time). */
  bindPolicy(decide: (target: McpTarget) => boolean): void {
    this.#decide = decide;
  }

  /** The MCP fields of the request record. */
  audit(): McpAuditFields | undefined {
    const m = this.#message;
    if (m === undefined) return undefined;
    return {
      rpc: m.type,
      method: m.method,
      // A resource URI's query and fragment may carry data: audited without them.
      name: m.kind === 'resource' ? m.name?.replace(/[?#][\s\S]*$/, '') : m.name,
      args_digest: m.argsDigest,
      protocol_version: m.protocolVersion,
    };
  }

  /** The MCP fields of the outcome record. */
  outcome(): McpAuditFields | undefined {
    const base = this.audit();
    if (base === undefined) return undefined;
    const i = this.#inspection;
    return {
      ...base,
      args_digest: undefined,
      outcome: i?.outcome,
      rpc_error: i?.rpc_error,
      filtered: i === undefined || i.filtered === 0 ? undefined : i.filtered,
    };
  }

  /** The upstream target: the configured MCP endpoint itself. */
  upstreamPath(basePath: string): string {
    return basePath === '' ? '/' : basePath;
  }

  /** Outbound headers: an identity-coded answer, which the filter can read. */
  prepare(headers: Record<string, string>): void {
    headers['accept-encoding'] = 'identity';
  }

  /**
   * The upstream body as the agent gets it (before the redactor): list results filtered,
   * the outcome noted. Throws `upstream_invalid` (before any header is sent) when a list
   * result comes in a form it cannot filter.
   */
  body(upstream: Readable, contentType: string | undefined, coded: boolean): Readable {
    const m = this.#message;
    if (m === undefined || m.type !== 'request' || m.method === undefined || m.id === undefined) {
      return upstream;
    }
    if (coded) {
      if (isFilteredList(m.method)) {
        createMcpResponseFilter({
          id: m.id,
          method: m.method,
          contentType: 'application/octet-stream',
          allowed: () => false,
          maxBytes: 0,
        });
      }
      return upstream;
    }
    const decide = this.#decide ?? (() => false);
    const { stream, inspection } = createMcpResponseFilter({
      id: m.id,
      method: m.method,
      contentType,
      allowed: decide,
      maxBytes: MCP_INSPECT_MAX_BYTES,
    });
    this.#inspection = inspection;
    upstream.on('error', (err) => stream.destroy(err));
    stream.on('close', () => {
      if (!upstream.destroyed) upstream.destroy();
    });
    return upstream.pipe(stream);
  }

  /**
   * Answers a refusal as a JSON-RPC error response (docs/mcp.md, "Errors") when the
   * request was a POSTed message whose body was read; returns false otherwise (the
   * caller sends the problem+json).
   */
  refuse(
    res: ServerResponse,
    err: NexusError,
    requestId: string,
    closeConnection: boolean,
    bodyConsumed: boolean,
  ): boolean {
    if (!this.#posted || !bodyConsumed || res.headersSent) return false;
    const parseError = (err as { parseError?: boolean }).parseError === true;
    const body = JSON.stringify(
      mcpRefusal(
        this.#message?.id ?? (err as { rpcId?: JsonRpcId }).rpcId ?? null,
        err.code,
        safeDetail(err),
        requestId,
        parseError,
      ),
    );
    // A refusal by Nexus like any other (signed, spec §10.4): only the body is JSON-RPC.
    sendRefusal(res, err, requestId, closeConnection, 'application/json', body);
    return true;
  }
}
