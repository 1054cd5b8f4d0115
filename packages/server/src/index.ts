// @nexus-proxy/server: the Authority, proxy, policy, vault, mechanics, scrubber, audit, store
// and admin API. `startNexus` runs them all in one process (`nexus up`).
export const VERSION = '0.1.0';

export { startNexus } from './app/start.js';
export type { StartOptions, RunningNexus } from './app/start.js';
export {
  runWorkersPrimary,
  workerRole,
  refuseWorkersConfig,
  WorkersConfigError,
} from './app/workers.js';
export type { WorkerRole } from './app/workers.js';
export { ListenError } from './app/listen-error.js';
export { initNode } from './app/init.js';
export { verifyAuditLog, verifyAuditOffline } from './app/verify-audit.js';
export type { AuditVerifyReport, AuditVerifyOptions } from './app/verify-audit.js';
export { checkpointFilePath, loadCheckpoints } from './audit/checkpoint-file.js';
export { openConfiguredStore } from './app/open-store.js';
export { StateFileError } from './app/state-files.js';

// The config loader and the state-file paths come from the entry the CLI loads alone
// (`@nexus-proxy/server/config`), which also registers every built-in mechanic's option
// schema with the loader.
export {
  checkStateFileModes,
  ConfigError,
  loadConfig,
  nodeStateFiles,
  operatorTokenFile,
  parseConfig,
  parseConfigText,
} from './config-entry.js';
export type { StateFile } from './config-entry.js';
export type { ConfigIssue } from './config/errors.js';
export { DEFAULTS } from './config/schema.js';
export type {
  Config,
  ServiceConfig,
  AgentConfig,
  AuthConfig,
  StoreConfig,
} from './config/schema.js';
export { registerMechanicSchema } from './config/auth-schemas.js';
export { renderExampleConfig } from './config/example.js';
export {
  CONFIG_SCHEMA_FILE,
  configJsonSchema,
  configJsonSchemaText,
} from './config/json-schema.js';

export { compilePolicy } from './policy/compile.js';
export type {
  CompiledPolicy,
  PolicyInput,
  PolicyDecision,
  PolicyExplanation,
} from './policy/compile.js';
export type { PolicyRule } from './policy/rule-schema.js';
export { explanationJson } from './policy/explain-json.js';
export type { PolicyExplanationJson } from './policy/explain-json.js';

export { MECHANICS, registerMechanicSchemas } from './mechanics/index.js';
export type {
  Mechanic,
  MechanicContext,
  MechanicDefinition,
  OutboundRequest,
  AppliedAuth,
  ResolvedCredential,
} from './mechanics/mechanic.js';

export { discoverMcpAuthorization } from './mcp/discovery.js';
export { addServiceToConfigFile } from './mcp/config-write.js';
export { mcpTarget } from './mcp/message.js';
export type { McpAuthDiscovery } from './mcp/discovery.js';
export { PRESETS, getPreset } from './presets/presets.js';
export type { ServicePreset, PresetField, PresetVariable } from './presets/presets.js';
export {
  addServiceToConfigText,
  credentialInstructions,
  presetToJson,
  presetVariables,
  renderPresetService,
} from './presets/apply.js';
export type { PresetServiceEntry, RenderOptions } from './presets/apply.js';
export { renderPresetTable } from './presets/docs.js';

export { openSqliteStore } from './store/sqlite.js';
export type { Store } from './store/store.js';
export { createLogger } from './util/logger.js';
export type { Logger } from './util/logger.js';
