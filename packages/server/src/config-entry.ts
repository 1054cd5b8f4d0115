/**
 * `@nexus-proxy/server/config`: the config loader and the node's state-file paths alone,
 * without the proxy, the stores and their drivers (pg, ioredis, kysely, OpenTelemetry).
 * The `nexus` CLI imports this at start-up so that `nexus run`, `nexus agent enroll` and
 * the other admin commands start in about half the time; it loads the whole server
 * (`@nexus-proxy/server`) only in the commands that run it.
 */
export { loadConfig, parseConfig, parseConfigText } from './config/load.js';
export { ConfigError } from './config/errors.js';
export type { Config } from './config/schema.js';
export { checkStateFileModes, nodeStateFiles, operatorTokenFile } from './app/state-files.js';
export type { StateFile } from './app/state-files.js';
