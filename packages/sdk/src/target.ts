/**
 * The request target `agent.fetch` signs: checked with the protocol's routing rules
 * before anything is signed, so a service name outside the proxy's syntax, an Authority
 * prefix (`v1`, `.well-known`) or a path that could escape its service (`..`, `%2e%2e`,
 * `\`, `//`, ...) is refused locally with the code the proxy would answer.
 */
import { isNexusError, serviceTarget } from '@nexus-proxy/protocol';
import { NexusAgentError } from './errors.js';

/**
 * `/{service}{path}`, or a {@link NexusAgentError} (`service_unknown`, `path_invalid`,
 * `request_invalid`) whose message holds no part of the input.
 */
export function checkedTarget(service: string, path: string): string {
  try {
    return serviceTarget(service, path);
  } catch (err) {
    if (!isNexusError(err)) throw err;
    throw new NexusAgentError(err.code, `${err.code}: ${err.message}`, { status: err.status });
  }
}
