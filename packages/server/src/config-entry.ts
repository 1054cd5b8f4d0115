/**
 * `@nexus-proxy/server/config`: the config loader (with the mechanics' config schemas) and
 * the node's state-file paths alone, without the proxy, the stores and their drivers (pg,
 * ioredis, kysely, OpenTelemetry). The `nexus` CLI imports this at start-up, so that
 * `nexus run`, `nexus agent enroll` and the other admin commands start in a third to half
 * the time, and loads the whole server (`@nexus-proxy/server`) only in the commands that
 * run it.
 */
import { registerMechanicSchemas } from './mechanics/index.js';

// The loader knows every built-in auth type (oauth2_*, aws_sigv4, mtls...) only once the
// mechanics have registered their schemas; without them an admin command on a node whose
// config uses one would refuse the config. The server's index re-exports this entry, so
// this is the one place they are registered.
registerMechanicSchemas();

export { loadConfig, parseConfig, parseConfigText } from './config/load.js';
export { ConfigError } from './config/errors.js';
export type { Config } from './config/schema.js';
export { checkStateFileModes, nodeStateFiles, operatorTokenFile } from './app/state-files.js';
export type { StateFile } from './app/state-files.js';
