// The commented nexus.yaml that `nexus init` writes: a worked example (one loopback echo
// service with a bearer credential, one agent, one allow rule) with every section
// explained. Tests parse it with the real schema, so it cannot drift from it.
import { CONFIG_SCHEMA_FILE } from './json-schema.js';
import { DEFAULTS } from './schema.js';

/** Options for {@link renderExampleConfig}; every field has a working default. */
export interface ExampleConfigOptions {
  /** Proxy listen address. Default `127.0.0.1:7070`. */
  readonly proxyListen?: string;
  /** Admin listen address. Default `127.0.0.1:7071`. */
  readonly adminListen?: string;
  /** Example service name. Default `echo`. */
  readonly serviceName?: string;
  /** Example upstream. Default `http://127.0.0.1:8080`. */
  readonly upstream?: string;
  /** Vault credential name referenced by the example. Default `echo-token`. */
  readonly credential?: string;
  /** Example agent name. Default `demo-agent`. */
  readonly agent?: string;
  /** Example role. Default `reader`. */
  readonly role?: string;
  /** Trust domain. Default `nexus.local`. */
  readonly trustDomain?: string;
  /** The `store` setting. Default `sqlite:.nexus/nexus.db`. */
  readonly store?: string;
  /**
   * The JSON Schema the editor modeline points at, relative to the file. Default
   * `./nexus.schema.json` (`nexus init` writes it next to nexus.yaml: works offline and
   * matches the installed version).
   */
  readonly schema?: string;
}

const q = (s: string): string => JSON.stringify(s);

/**
 * Renders the example nexus.yaml text.
 *
 * @example await writeFile('nexus.yaml', renderExampleConfig({ agent: 'triage-bot' }));
 */
export function renderExampleConfig(options: ExampleConfigOptions = {}): string {
  const d = DEFAULTS;
  const proxyListen = options.proxyListen ?? d.proxy.listen;
  const adminListen = options.adminListen ?? d.admin.listen;
  const service = options.serviceName ?? 'echo';
  const upstream = options.upstream ?? 'http://127.0.0.1:8080';
  const credential = options.credential ?? 'echo-token';
  const agent = options.agent ?? 'demo-agent';
  const role = options.role ?? 'reader';
  const trustDomain = options.trustDomain ?? d.authority.trust_domain;
  const schema = options.schema ?? `./${CONFIG_SCHEMA_FILE}`;
  return `# yaml-language-server: $schema=${schema}
# nexus.yaml: the Nexus server configuration.
# Validated at start-up: unknown keys are errors and every problem is reported at once.
# Secrets never go here: credentials live in the vault (\`nexus credential set NAME\`)
# and are referenced by name. Relative paths resolve against this file's directory.
# Durations: 500ms, 30s, 15m, 24h, 7d (combinable: 1h30m). Sizes: bytes, 16KiB, 10MiB.
# The first line points editors at ${schema} (key completion, typos flagged).
version: 1

# The Authority issues leases (short-lived agent identities) and publishes its keys.
authority:
  # issuer: http://${proxyListen}      # default: proxy.public_url
  trust_domain: ${q(trustDomain)}      # agents are nexus://<trust_domain>/agent/<name>
  lease_ttl: ${d.authority.lease_ttl}                     # lifetime of one lease
  lease_max_lifetime: ${d.authority.lease_max_lifetime}            # renewals stop here
  enrollment_ttl: ${d.authority.enrollment_ttl}                # one-time enrollment tokens
  signing_alg: ${d.authority.signing_alg}                 # EdDSA or ES256
  key_rotation: ${d.authority.key_rotation}                  # or "off"
  clock_skew: ${d.authority.clock_skew}                    # tolerated skew on lease times

# The proxy: agents call {public_url}/{service}/{path}. Loopback by default.
proxy:
  listen: ${q(proxyListen)}
  # public_url: http://${proxyListen}  # set when behind a load balancer or TLS terminator
  max_body: ${d.proxy.max_body}                    # request bodies are buffered for the digest check
  max_header_size: ${d.proxy.max_header_size}
  signature_skew: ${d.proxy.signature_skew}
  timeouts:
    connect: ${d.proxy.timeouts.connect}
    headers: ${d.proxy.timeouts.headers}
    body: ${d.proxy.timeouts.body}
  replay_cache_size: ${d.proxy.replay_cache_size}

# The operator REST API (/v1/...). Keep it off public networks; it must differ from proxy.listen.
admin:
  listen: ${q(adminListen)}

# sqlite:<path>, sqlite::memory: (tests) or postgres://user@host/db (password via PGPASSWORD).
# One running node per SQLite store (it holds <store>.lock); \`nexus init\` creates the store.
# Any number of nodes share one PostgreSQL database (docs/deployment.md, "Cluster").
store: ${q(options.store ?? d.store)}
# A cluster may also share a Redis for replay records and change notices (faster than the
# database, which serves both without it); no password in the URL:
# redis: { url: redis://10.0.0.5:6379/0, key_prefix: "nexus:" }

# Vault master key; NEXUS_MASTER_KEY in the environment takes precedence.
master_key_file: ${q(d.master_key_file)}

log:
  level: ${d.log.level}                          # debug | info | warn | error
  format: ${d.log.format}                         # json (one object per line) or pretty
  access: ${d.log.access}                         # a line per proxied request (no secrets)

# Tamper-evident audit chain: a signed checkpoint every N records or interval. Each one is
# also logged and appended to <store>.checkpoints.jsonl: ship it off the host, then
# \`nexus audit verify --against <copy>\` detects removed records.
audit:
  checkpoint_every: ${d.audit.checkpoint_every}
  checkpoint_interval: ${d.audit.checkpoint_interval}

# Response scrubbing: these headers are removed; injected secret values are redacted.
scrub:
  remove_headers: [${d.scrub.remove_headers.join(', ')}]
  min_secret_length: ${d.scrub.min_secret_length}

# Services: one entry per upstream. Names: lowercase letters, digits, "-".
# Plain http:// is only allowed to loopback hosts unless allow_insecure_upstream: true.
# auth.type (docs/mechanics/<type>.md): none | header | bearer | basic | query | aws_sigv4 |
#   hmac | oauth2_client_credentials | oauth2_authorization_code | jwt_bearer | github_app |
#   token_exchange | mtls. Or start from a preset: nexus presets; nexus service add <preset>.
services:
  ${service}:
    upstream: ${q(upstream)}
    auth:
      type: bearer                         # Authorization: Bearer <credential field>
      credential: ${q(credential)}            # set it with: nexus credential set ${credential}
      # field: value                       # which field of the credential to send
    # scrub: { remove_headers: [x-internal-token] }   # added to the global list
    # timeouts: { headers: 60s }                       # overrides proxy.timeouts
    # hosts: [api.example.com]      # nexus run's forward proxy routes this host here
    # env: { EXAMPLE_BASE_URL: "{base_url}", EXAMPLE_API_KEY: "{dummy_key}" }  # for SDKs
    # websocket: true               # accept WebSocket upgrades (default off; docs/agents.md)
  # github:
  #   upstream: https://api.github.com
  #   auth: { type: header, credential: github-token, name: authorization, template: "token {{value}}" }
  # tools:                               # an MCP server: tool policy, filtered lists (docs/mcp.md)
  #   kind: mcp
  #   upstream: https://tools.internal/mcp
  #   auth: { type: bearer, credential: tools-key }

# Agents and their roles (the lease scope). Enrol one with: nexus agent enroll ${agent}
agents:
  ${agent}:
    roles: [${role}]
    description: "Example agent created by nexus init"

# Policies: default deny; deny rules override allow rules. Each rule has allow: or deny:
# with optional matchers (absent = any): agents, roles, services, methods ("*" = any),
# paths (globs: * = one segment, ** = any number), intent (regex, full match, case-
# insensitive), time ({ days: [mon, tue], from: "09:00", to: "17:00", tz: UTC }).
policies:
  - id: ${role}-reads-${service}
    description: "${role} agents may read anything on ${service}"
    allow:
      roles: [${role}]
      services: [${service}]
      methods: [GET, HEAD]
      paths: ["/**"]
  # - id: no-deletes
  #   deny: { methods: [DELETE] }
`;
}
