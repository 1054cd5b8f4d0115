/**
 * Service routing and path normalisation for the proxy pipeline. The rules live in
 * `@nexus/protocol` (one definition shared with the SDK and the `nexus run` sidecar, which
 * check their targets the same way before signing); this module re-exports them.
 */
export { parseRoute, RESERVED_SERVICE_NAMES, SERVICE_NAME } from '@nexus/protocol';
export type { Route } from '@nexus/protocol';
