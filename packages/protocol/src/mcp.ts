// How a refusal by Nexus looks to an MCP client: a JSON-RPC 2.0 error response instead of
// an RFC 9457 problem (docs/mcp.md, "Errors"). Shared by the proxy, which answers MCP
// services this way, and the SDK's MCP fetch adapter, which turns a refusal it received as
// a problem (lease, signature) into the same shape, so a client sees one form.
import { ERROR_CODES, type ErrorCode } from './errors.js';

/** A JSON-RPC request id (`null` when the refused message had none that could be read). */
export type JsonRpcId = string | number | null;

/**
 * The JSON-RPC error code of a Nexus refusal: `-32020` (MCP's HeaderMismatch) for
 * `mcp_header_mismatch`, `-32700` (parse error) and `-32600` (invalid request) for a body
 * that is not one JSON-RPC message, and `-32010` for every other refusal (policy, lease,
 * signature...): a code from JSON-RPC's implementation-defined range that MCP leaves free
 * (it reserves -32020 to -32099).
 */
export const NEXUS_JSONRPC_ERROR = -32010;

/** The `error.data` of a Nexus refusal: the same fields as its problem+json. */
export interface McpRefusalData {
  readonly code: string;
  readonly detail: string;
  readonly request_id: string;
}

/** A JSON-RPC error response carrying a Nexus refusal. */
export interface McpRefusal {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId;
  readonly error: {
    readonly code: number;
    readonly message: string;
    readonly data: McpRefusalData;
  };
}

/**
 * Builds the JSON-RPC error response of a Nexus refusal. `detail` MUST be a safe detail
 * (server-chosen text and configuration names, never raw request input).
 *
 * @example
 * mcpRefusal(7, 'policy_denied', 'no rule allows this request', 'r1').error.code // -32010
 */
export function mcpRefusal(
  id: JsonRpcId,
  code: string,
  detail: string,
  requestId: string,
  parseError = false,
): McpRefusal {
  const jsonRpcCode =
    code === 'mcp_header_mismatch'
      ? -32020
      : code === 'mcp_invalid'
        ? parseError
          ? -32700
          : -32600
        : NEXUS_JSONRPC_ERROR;
  const title = Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as ErrorCode].title : code;
  return {
    jsonrpc: '2.0',
    id,
    error: {
      code: jsonRpcCode,
      message: `${code}: ${detail || title}`,
      data: { code, detail, request_id: requestId },
    },
  };
}
