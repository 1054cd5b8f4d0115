// The nexus.yaml schema (zod). Strict objects everywhere: an unknown key is an error.
// Every default lives in DEFAULTS below, written as it would be in YAML. The parsed
// Config keeps the YAML's snake_case keys; durations are numbers in milliseconds, sizes
// numbers in bytes, listen addresses `{ host, port }`, paths absolute.
import { redisSchema, type RedisConfig } from './redis-schema.js';
import { isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';
import { getMechanicSchema, registeredMechanicTypes } from './auth-schemas.js';
import { AGENT_NAME_RE, RESERVED_SERVICE_NAMES, ROLE_NAME_RE, SERVICE_NAME_RE } from './names.js';
import {
  DURATION_PATTERN,
  formatListen,
  parseDuration,
  parseListen,
  parseSize,
  SIZE_PATTERN,
  type ListenAddress,
} from './units.js';
import type { RedactedString } from './redacted.js';
import { policyRuleSchema, type PolicyRule } from '../policy/rule-schema.js';
import { serviceEnvSchema, serviceHostsSchema } from './reach.js';
import { metricsSchema, type MetricsConfig } from './operator-schema.js';
import { consoleSchema, type ConsoleConfig } from './console-schema.js';
import { limitsSchema, type LimitRule } from '../limits/schema.js';
import { telemetrySchema, type TelemetryConfig } from '../telemetry/schema.js';
import { costSourceSchema, type CostSource } from '../limits/cost.js';
import { passthroughSchema, type PassthroughRule } from './passthrough.js';

/**
 * Every default of nexus.yaml, in YAML form. The schema parses these like user input.
 * MUST stay secure by default: loopback listeners, bounded sizes and times.
 */
export const DEFAULTS = {
  authority: {
    // issuer: defaults to proxy.public_url (the Authority lives on the proxy listener).
    trust_domain: 'nexus.local', // sub = nexus://<trust_domain>/agent/<name>
    lease_ttl: '15m', // lifetime of one lease
    lease_max_lifetime: '24h', // renewals stop here; re-enrol after
    enrollment_ttl: '10m', // one-time enrollment tokens
    signing_alg: 'EdDSA', // lease signing algorithm: EdDSA | ES256
    key_rotation: '30d', // Authority signing key rotation period; "off" disables
    clock_skew: '30s', // tolerated skew on lease exp/nbf
  },
  proxy: {
    listen: '127.0.0.1:7070', // loopback only unless changed
    // public_url: defaults to http://<listen>
    max_body: '10MiB', // request bodies are buffered for the digest check
    max_header_size: '16KiB',
    signature_skew: '5s', // tolerated skew on signature created/expires
    timeouts: {
      connect: '5s', // TCP/TLS connect to the upstream
      headers: '30s', // until the upstream's response headers
      body: '300s', // between response body chunks
    },
    replay_cache_size: 1_000_000, // nonces remembered (bounded memory)
  },
  admin: {
    listen: '127.0.0.1:7071', // MUST differ from proxy.listen
  },
  store: 'sqlite:.nexus/nexus.db', // relative to the config file's directory
  master_key_file: '.nexus/master.key', // used unless NEXUS_MASTER_KEY is set
  log: {
    level: 'info',
    format: 'json', // json (one object per line) | pretty (for a terminal)
    access: true, // one line per proxied request (no secrets, no intent)
  },
  audit: {
    checkpoint_every: 1000, // sign a checkpoint every N records...
    checkpoint_interval: '60s', // ...or at least this often
  },
  scrub: {
    // Response headers always removed (services may add more).
    remove_headers: [
      'set-cookie',
      'set-cookie2',
      'authorization',
      'proxy-authorization',
      'proxy-authenticate',
    ],
    min_secret_length: 8, // shorter injected values are not redacted (too many false hits)
  },
  services: {},
  agents: {},
  policies: [],
} as const;

/** Upstream connection timeouts, in ms. */
export interface Timeouts {
  readonly connect: number;
  readonly headers: number;
  readonly body: number;
}

/** A service's `auth` block after its mechanic schema (defaults applied). */
export interface AuthConfig {
  /** The mechanic: `none`, `header`, `bearer`, `basic`, `query`, or a registered one. */
  readonly type: string;
  /** Vault credential name; absent only for `none`-like mechanics. */
  readonly credential?: string;
  /** Mechanic options, as its schema parsed them. */
  readonly [option: string]: unknown;
}

/** One service. */
export interface ServiceConfig {
  /** The service name (its key under `services`). */
  readonly name: string;
  /** Upstream base URL without a trailing slash: `https://api.github.com`, `https://x/api`. */
  readonly upstream: string;
  /** `http` (default) or `mcp`: an MCP server's endpoint, with tool policy (docs/mcp.md). */
  readonly kind: 'http' | 'mcp';
  readonly allow_insecure_upstream: boolean;
  readonly auth: AuthConfig;
  /** Headers removed from responses: the global list plus this service's, lowercased. */
  readonly scrub: { readonly remove_headers: readonly string[] };
  /** Proxy timeouts with this service's overrides applied. */
  readonly timeouts: Timeouts;
  /** Upstream TLS settings; `ca_file` (absolute) trusts a private CA for this upstream. */
  readonly tls?: { readonly ca_file?: string };
  /** Variables `nexus run` exports for this service's SDKs (`config/reach.ts`). */
  readonly env?: Readonly<Record<string, string>>;
  /** Host names the forward proxy of `nexus run` routes to this service. */
  readonly hosts?: readonly string[];
  /** Accepts WebSocket upgrades (default false: an upgrade is denied, proxy/websocket.ts). */
  readonly websocket: boolean;
  /** How a response's cost is read, for `cost` budgets (limits/cost.ts). */
  readonly cost?: CostSource;
}

/** One agent. */
export interface AgentConfig {
  readonly name: string;
  readonly roles: readonly string[];
  readonly description?: string;
}

/** Where the store lives. */
export type StoreConfig =
  | { readonly driver: 'sqlite'; readonly path: string /* absolute, or ':memory:' */ }
  | { readonly driver: 'postgres'; readonly url: string };

/** The vault master key source. The env value is wrapped so it never prints. */
export type MasterKeySource =
  | { readonly source: 'file'; readonly path: string }
  | { readonly source: 'env'; readonly name: 'NEXUS_MASTER_KEY'; readonly value: RedactedString };

/** Log levels. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** The validated, frozen nexus.yaml. */
export interface Config {
  readonly version: 1;
  /** Directory relative paths were resolved against (the config file's directory). */
  readonly base_dir: string;
  readonly authority: {
    readonly issuer: string;
    readonly trust_domain: string;
    readonly lease_ttl: number;
    readonly lease_max_lifetime: number;
    readonly enrollment_ttl: number;
    readonly signing_alg: 'EdDSA' | 'ES256';
    /** Rotation period in ms; `undefined` = no automatic rotation. */
    readonly key_rotation: number | undefined;
    readonly clock_skew: number;
  };
  readonly proxy: {
    readonly listen: ListenAddress;
    /** Public base URL without a trailing slash. */
    readonly public_url: string;
    readonly max_body: number;
    readonly max_header_size: number;
    readonly signature_skew: number;
    readonly timeouts: Timeouts;
    readonly replay_cache_size: number;
  };
  readonly admin: {
    readonly listen: ListenAddress;
    readonly metrics: MetricsConfig;
    /** The web console's login for people (`admin.console.oidc`). */
    readonly console: ConsoleConfig;
  };
  readonly store: StoreConfig;
  /** The Redis a cluster shares (replay, change notices); undefined: none. */
  readonly redis: RedisConfig | undefined;
  /** Absolute path of the master key file (`master_key_file`, resolved). */
  readonly master_key_file: string;
  /** Where the vault master key comes from: NEXUS_MASTER_KEY if set, else the file. */
  readonly master_key: MasterKeySource;
  readonly log: {
    readonly level: (typeof LOG_LEVELS)[number];
    readonly format: 'json' | 'pretty';
    readonly access: boolean;
  };
  readonly audit: { readonly checkpoint_every: number; readonly checkpoint_interval: number };
  readonly scrub: {
    readonly remove_headers: readonly string[];
    readonly min_secret_length: number;
  };
  readonly services: Readonly<Record<string, ServiceConfig>>;
  readonly agents: Readonly<Record<string, AgentConfig>>;
  readonly policies: readonly PolicyRule[];
  /** Rate limits and budgets (limits/schema.ts). */
  readonly limits: readonly LimitRule[];
  /** OpenTelemetry traces (telemetry/schema.ts); off unless `telemetry.traces` is set. */
  readonly telemetry: TelemetryConfig;
  /** Hosts `nexus run` may tunnel blind for named agents or roles (config/passthrough.ts). */
  readonly passthrough: readonly PassthroughRule[];
}

/** Options for {@link buildConfigSchema}. */
export interface SchemaOptions {
  /** Directory against which relative paths resolve. */
  readonly baseDir: string;
  /** NEXUS_MASTER_KEY from the environment, if set. */
  readonly masterKeyFromEnv?: RedactedString;
}

// ---- leaves ---------------------------------------------------------------------------

const duration = z
  .string({ error: 'must be a duration with a unit, e.g. 30s, 15m, 24h, 7d, 500ms' })
  .transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be a duration with a unit, e.g. 30s, 15m, 24h, 7d, 500ms',
      });
      return z.NEVER;
    }
    return ms;
  })
  .meta({
    description: 'A duration with a unit: 500ms, 30s, 15m, 24h, 7d, combinable (1h30m).',
    pattern: DURATION_PATTERN, // for the JSON Schema (json-schema.ts); parsing is above
  });

const positiveDuration = duration.refine((ms) => ms > 0, 'must be greater than zero');

const size = z
  .union([z.string(), z.number()], { error: 'must be a size, e.g. 16KiB, 10MiB or bytes' })
  .transform((v, ctx) => {
    const bytes = parseSize(v);
    if (bytes === undefined || bytes === 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be a positive size, e.g. 16KiB, 10MiB or bytes',
      });
      return z.NEVER;
    }
    return bytes;
  })
  .meta({ description: 'A size: bytes (a number) or 16KiB, 10MiB, 1GB.', pattern: SIZE_PATTERN });

const listen = z.string().transform((s, ctx) => {
  const addr = parseListen(s);
  if (addr === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be host:port, e.g. 127.0.0.1:7070 or [::1]:7070',
    });
    return z.NEVER;
  }
  return addr;
});

/** Base URL without trailing slash; http(s) only; no credentials, query or fragment. */
function baseUrl(s: string, ctx: z.RefinementCtx): URL | undefined {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'must be an http or https URL' });
    return undefined;
  }
  // MUST NOT carry secrets: credentials live in the vault.
  if (url.username !== '' || url.password !== '') {
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain user info; credentials belong in the vault',
    });
    return undefined;
  }
  if (url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'must not have a query or fragment' });
    return undefined;
  }
  return url;
}

function urlString(url: URL): string {
  return url.href.replace(/\/+$/, '');
}

const publicUrl = z.string().transform((s, ctx) => {
  const url = baseUrl(s, ctx);
  return url === undefined ? z.NEVER : urlString(url);
});

/** True for 127.0.0.0/8, ::1 and localhost (the only hosts plain HTTP is allowed to). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (h.toLowerCase() === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

const headerList = z
  .array(z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'must be an HTTP header name'))
  .transform((a) => a.map((h) => h.toLowerCase()));

const timeoutsSchema = z.strictObject({
  connect: positiveDuration.prefault(DEFAULTS.proxy.timeouts.connect),
  headers: positiveDuration.prefault(DEFAULTS.proxy.timeouts.headers),
  body: positiveDuration.prefault(DEFAULTS.proxy.timeouts.body),
});

const authSchema = z.looseObject({ type: z.string() }).transform((v, ctx) => {
  const { type, ...options } = v;
  const schema = getMechanicSchema(type);
  if (schema === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['type'],
      message: `unknown auth type; known: ${registeredMechanicTypes().join(', ')}`,
    });
    return z.NEVER;
  }
  const r = schema.safeParse(options);
  if (!r.success) {
    for (const issue of r.error.issues)
      ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0]);
    return z.NEVER;
  }
  return { type, ...r.data } as AuthConfig;
});

/** Upstream base URL; the plain-http rule is checked across fields in `load.ts`. */
const upstreamUrl = z.string().transform((s, ctx) => {
  const url = baseUrl(s, ctx);
  return url === undefined ? z.NEVER : urlString(url);
});

const serviceSchema = z.strictObject({
  upstream: upstreamUrl,
  kind: z.enum(['http', 'mcp']).default('http'),
  allow_insecure_upstream: z.boolean().default(false),
  auth: authSchema,
  scrub: z.strictObject({ remove_headers: headerList.default([]) }).prefault({}),
  timeouts: z
    .strictObject({
      connect: positiveDuration.optional(),
      headers: positiveDuration.optional(),
      body: positiveDuration.optional(),
    })
    .prefault({}),
  /** Upstream TLS: `ca_file` is a PEM bundle trusted for this upstream (a private CA). */
  tls: z.strictObject({ ca_file: z.string().min(1).optional() }).optional(),
  /** How unmodified agents reach it under `nexus run` (issue 11, `config/reach.ts`). */
  env: serviceEnvSchema,
  hosts: serviceHostsSchema,
  /**
   * WebSocket upgrades to this service (issue 11). Off by default: a stream's messages are
   * not decided one by one by policy, so an operator opts each service in.
   */
  websocket: z.boolean().default(false),
  /** Where a response says what it cost (LLM token usage), for `cost` limits. */
  cost: costSourceSchema.optional(),
});

const agentSchema = z.strictObject({
  roles: z
    .array(z.string().regex(ROLE_NAME_RE, 'must be a role name'))
    .transform((a) => [...new Set(a)].sort()),
  description: z.string().max(1024).optional(),
});

function storeFrom(s: string, baseDir: string, ctx: z.RefinementCtx): StoreConfig | undefined {
  if (s === 'sqlite::memory:') return { driver: 'sqlite', path: ':memory:' };
  if (s.startsWith('sqlite:')) {
    const p = s.slice('sqlite:'.length);
    if (p === '') {
      ctx.addIssue({
        code: 'custom',
        message: 'sqlite: needs a path, e.g. sqlite:.nexus/nexus.db',
      });
      return undefined;
    }
    return { driver: 'sqlite', path: isAbsolute(p) ? p : resolve(baseDir, p) };
  }
  if (s.startsWith('postgres://') || s.startsWith('postgresql://')) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a valid postgres:// URL' });
      return undefined;
    }
    // MUST NOT carry secrets: pass the password through the environment (PGPASSWORD).
    if (url.password !== '') {
      ctx.addIssue({
        code: 'custom',
        message: 'must not contain a password; use the PGPASSWORD environment variable',
      });
      return undefined;
    }
    return { driver: 'postgres', url: s };
  }
  ctx.addIssue({
    code: 'custom',
    message: 'must be sqlite:<path>, sqlite::memory: or postgres://...',
  });
  return undefined;
}

/**
 * Builds the schema for one load (paths resolve against `baseDir`). Cross-field checks
 * live in `load.ts` so they run even when other parts are invalid.
 */
export function buildConfigSchema(opts: SchemaOptions) {
  const { baseDir, masterKeyFromEnv } = opts;
  const d = DEFAULTS;
  return z
    .strictObject({
      version: z.literal(1, { error: 'must be 1' }),
      authority: z
        .strictObject({
          issuer: publicUrl.optional(),
          trust_domain: z
            .string()
            .regex(
              /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
              'must be a DNS-like name',
            )
            .default(d.authority.trust_domain),
          lease_ttl: positiveDuration.prefault(d.authority.lease_ttl),
          lease_max_lifetime: positiveDuration.prefault(d.authority.lease_max_lifetime),
          enrollment_ttl: positiveDuration.prefault(d.authority.enrollment_ttl),
          signing_alg: z.enum(['EdDSA', 'ES256']).default(d.authority.signing_alg),
          key_rotation: z
            .union([z.literal('off'), positiveDuration])
            .prefault(d.authority.key_rotation)
            .transform((v) => (v === 'off' ? undefined : v)),
          clock_skew: duration.prefault(d.authority.clock_skew),
        })
        .prefault({}),
      proxy: z
        .strictObject({
          listen: listen.prefault(d.proxy.listen),
          public_url: publicUrl.optional(),
          max_body: size.prefault(d.proxy.max_body),
          max_header_size: size.prefault(d.proxy.max_header_size),
          signature_skew: duration.prefault(d.proxy.signature_skew),
          timeouts: timeoutsSchema.prefault({}),
          replay_cache_size: z.int().positive().default(d.proxy.replay_cache_size),
        })
        .prefault({}),
      admin: z
        .strictObject({
          listen: listen.prefault(d.admin.listen),
          metrics: metricsSchema(baseDir),
          console: consoleSchema,
        })
        .prefault({}),
      store: z
        .string()
        .prefault(d.store)
        .transform((s, ctx) => storeFrom(s, baseDir, ctx) ?? z.NEVER),
      redis: redisSchema.optional(),
      master_key_file: z
        .string()
        .min(1)
        .prefault(d.master_key_file)
        .transform((p) => resolve(baseDir, p)),
      log: z
        .strictObject({
          level: z.enum(LOG_LEVELS).default(d.log.level),
          format: z.enum(['json', 'pretty']).default(d.log.format),
          access: z.boolean().default(d.log.access),
        })
        .prefault({}),
      audit: z
        .strictObject({
          checkpoint_every: z.int().positive().default(d.audit.checkpoint_every),
          checkpoint_interval: positiveDuration.prefault(d.audit.checkpoint_interval),
        })
        .prefault({}),
      scrub: z
        .strictObject({
          remove_headers: headerList.prefault([...d.scrub.remove_headers]),
          min_secret_length: z.int().min(1).default(d.scrub.min_secret_length),
        })
        .prefault({}),
      services: z
        .record(
          z
            .string()
            .regex(SERVICE_NAME_RE, 'service names are lowercase letters, digits and "-" (max 63)')
            .refine((n) => !RESERVED_SERVICE_NAMES.has(n), 'this service name is reserved'),
          serviceSchema,
        )
        .prefault({}),
      agents: z
        .record(
          z
            .string()
            .regex(AGENT_NAME_RE, 'agent names are lowercase letters, digits, ".", "_", "-"'),
          agentSchema,
        )
        .prefault({}),
      policies: z.array(policyRuleSchema).prefault([]),
      limits: limitsSchema,
      telemetry: telemetrySchema,
      passthrough: passthroughSchema,
    })
    .transform((c): Config => {
      const public_url = c.proxy.public_url ?? `http://${formatListen(c.proxy.listen)}`;
      const services: Record<string, ServiceConfig> = {};
      for (const [name, s] of Object.entries(c.services)) {
        services[name] = {
          name,
          upstream: s.upstream,
          kind: s.kind,
          allow_insecure_upstream: s.allow_insecure_upstream,
          websocket: s.websocket,
          auth: s.auth,
          scrub: {
            remove_headers: [...new Set([...c.scrub.remove_headers, ...s.scrub.remove_headers])],
          },
          timeouts: {
            connect: s.timeouts.connect ?? c.proxy.timeouts.connect,
            headers: s.timeouts.headers ?? c.proxy.timeouts.headers,
            body: s.timeouts.body ?? c.proxy.timeouts.body,
          },
          ...(s.tls?.ca_file === undefined
            ? {}
            : { tls: { ca_file: resolve(baseDir, s.tls.ca_file) } }),
          ...(s.env === undefined ? {} : { env: s.env }),
          ...(s.hosts === undefined ? {} : { hosts: s.hosts }),
          ...(s.cost === undefined ? {} : { cost: s.cost }),
        };
      }
      const agents: Record<string, AgentConfig> = {};
      for (const [name, a] of Object.entries(c.agents)) {
        agents[name] =
          a.description === undefined
            ? { name, roles: a.roles }
            : { name, roles: a.roles, description: a.description };
      }
      return {
        version: 1,
        base_dir: baseDir,
        authority: { ...c.authority, issuer: c.authority.issuer ?? public_url },
        proxy: { ...c.proxy, public_url },
        admin: c.admin,
        store: c.store,
        redis: c.redis,
        master_key_file: c.master_key_file,
        master_key:
          masterKeyFromEnv === undefined
            ? { source: 'file', path: c.master_key_file }
            : { source: 'env', name: 'NEXUS_MASTER_KEY', value: masterKeyFromEnv },
        log: c.log,
        audit: c.audit,
        scrub: { ...c.scrub, remove_headers: [...new Set(c.scrub.remove_headers)] },
        services,
        agents,
        policies: c.policies,
        limits: c.limits,
        telemetry: c.telemetry,
        passthrough: c.passthrough,
      };
    });
}
