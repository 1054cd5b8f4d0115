/**
 * Service routing and path normalisation for the proxy pipeline. The rules live in
 * `@nexus-proxy/protocol` (one definition shared with the SDK and the `nexus run` sidecar, which
 * check their targets the same way before signing); this module re-exports them.
 */
export { parseRoute, RESERVED_SERVICE_NAMES, SERVICE_NAME } from '@nexus-proxy/protocol';
export type { Route } from '@nexus-proxy/protocol';
