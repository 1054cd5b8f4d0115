// @nexus-proxy/sdk: the agent client. Depends only on @nexus-proxy/protocol.
export { enroll, fromLease, NexusAgent } from './agent.js';
export type {
  EnrollOptions,
  AgentFetchInit,
  AgentKeyAlgorithm,
  AgentService,
  DelegateOptions,
} from './agent.js';
export { NexusAgentError } from './errors.js';
export { mcpFetch, mcpOutgoing, defaultMcpIntent, intentText, MCP_INTENT_META } from './mcp.js';
export type { McpFetchOptions, McpOutgoing } from './mcp.js';
