// Name rules shared by config and policy: services, agents, roles, rule ids.

/** Service names: the first path segment at the proxy (profile-decisions: Routing). */
export const SERVICE_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Names the Authority owns on the proxy listener; no service may use them. */
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set(['v1', '.well-known']);

/** Agent names: the last segment of `nexus://<trust-domain>/agent/<name>`. */
export const AGENT_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Role names: items of the space-separated lease `scope`. */
export const ROLE_NAME_RE = /^[a-z0-9][a-z0-9._:-]{0,62}$/;

/** Policy rule ids. */
export const RULE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
