// @nexus/sdk: the agent client. Depends only on @nexus/protocol.
export { enroll, fromLease, NexusAgent } from './agent.js';
export type { EnrollOptions, AgentFetchInit, AgentKeyAlgorithm } from './agent.js';
export { NexusAgentError } from './errors.js';
