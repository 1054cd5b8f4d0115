// @nexus/sdk: the agent client. Depends only on @nexus/protocol.
export { enroll, NexusAgent } from './agent.js';
export type { EnrollOptions, AgentFetchInit, AgentKeyAlgorithm, AgentService } from './agent.js';
export { NexusAgentError } from './errors.js';
