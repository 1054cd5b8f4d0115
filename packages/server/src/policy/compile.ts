// The policy engine: compiles validated rules once (globs and intent patterns to RegExps,
// time windows to matchers, rules indexed by service) and evaluates requests as a pure
// function. Deny overrides allow; no matching allow means deny.
import { ConfigError, joinPath, type ConfigIssue } from '../config/errors.js';
import { canonicalize } from '../audit/canonical-json.js';
import { sha256Hex } from '../util/ids.js';
import { compileGlob, globProblem } from './glob.js';
import { compileMcpMatch } from './mcp-match.js';
import type { McpTarget } from '../mcp/message.js';
import { compileIntent, type ApprovalSettings, type PolicyRule } from './rule-schema.js';
import { compileTimeWindow, isValidTimeZone, parseHhMm, type TimeMatcher } from './time.js';

/** What the engine needs from the config: the rules and the names they may refer to. */
export interface PolicySource {
  readonly services: Readonly<Record<string, unknown>>;
  readonly agents: Readonly<Record<string, { readonly roles: readonly string[] }>>;
  readonly policies: readonly PolicyRule[];
}

/** One request as the policy sees it. A pure value: `now` is passed, never read. */
export interface PolicyInput {
  /** Agent name (from the lease `sub`). */
  readonly agent: string;
  /** Roles from the lease `scope`. */
  readonly roles: readonly string[];
  /** On whose behalf (lease `act.sub`); audited, not matched yet. */
  readonly act?: string;
  /** A sub-lease's delegation chain (`nexus_delegation`, root first); absent or empty: none. */
  readonly delegation?: readonly string[];
  readonly service: string;
  /** HTTP method; compared upper-case. */
  readonly method: string;
  /** Normalised service-relative path, starting with `/`, without query. */
  readonly path: string;
  /** The Nexus-Intent value (may be empty). */
  readonly intent: string;
  /** Milliseconds since the epoch. */
  readonly now: number;
  /** For a service of kind `mcp`: the JSON-RPC message (absent: not an MCP message). */
  readonly mcp?: McpTarget;
}

/** The outcome of {@link CompiledPolicy.evaluate}. */
export interface PolicyDecision {
  readonly decision: 'allow' | 'deny';
  /** The rules that decided: matching deny rules on a deny, matching allow rules on an allow, none on a default deny. */
  readonly ruleIds: readonly string[];
  /** Human-readable reasons naming rule ids only (no request input). */
  readonly reasons: readonly string[];
  /**
   * Set when the request is allowed only once an operator approves it (an `approve` rule
   * matched and no deny rule did): the first matching approve rule's settings.
   */
  readonly approval?: { readonly ruleId: string } & ApprovalSettings;
}

/** Matcher fields, in the order they are tested. */
export type MatchField =
  'services' | 'agents' | 'roles' | 'delegation' | 'methods' | 'paths' | 'mcp' | 'intent' | 'time';

/** Why one rule did or did not match. */
export interface RuleExplanation {
  readonly id: string;
  readonly effect: 'allow' | 'deny' | 'approve';
  readonly matched: boolean;
  /** The first field that did not match. */
  readonly failed?: MatchField;
  readonly reason: string;
}

/** The outcome of {@link CompiledPolicy.explain}: the decision plus every rule's verdict. */
export interface PolicyExplanation extends PolicyDecision {
  /** Every rule, in config order. */
  readonly rules: readonly RuleExplanation[];
}

/** A compiled, immutable policy set. */
export interface CompiledPolicy {
  /** Decides one request. Cost depends only on the rules that can apply to its service. */
  evaluate(input: PolicyInput): PolicyDecision;
  /** Like evaluate, with each rule's verdict (for `nexus policy explain`). */
  explain(input: PolicyInput): PolicyExplanation;
  /** SHA-256 hex of the canonical policy (rules without descriptions, plus agents' roles). */
  readonly hash: string;
  /** Rules that can apply to a service (those naming it and those naming no service). */
  rulesFor(service: string): readonly PolicyRule[];
}

interface CompiledRule {
  readonly rule: PolicyRule;
  /** Returns the first failing field, or undefined when every present field matches. */
  readonly test: (input: PolicyInput) => MatchField | undefined;
}

const FAIL_REASON: Readonly<Record<MatchField, string>> = {
  services: 'service not listed',
  agents: 'agent not listed',
  roles: 'no listed role held',
  delegation: 'delegation depth outside the range',
  methods: 'method not listed',
  paths: 'path matches no glob',
  mcp: 'MCP method, tool, resource or prompt not matched',
  intent: 'intent does not match the pattern',
  time: 'outside the time window',
};

function compileRule(rule: PolicyRule): CompiledRule {
  const m = rule.match;
  const services = m.services === undefined ? undefined : new Set(m.services);
  const agents = m.agents === undefined ? undefined : new Set(m.agents);
  const roles = m.roles === undefined ? undefined : new Set(m.roles);
  const methods =
    m.methods === undefined || m.methods.includes('*') ? undefined : new Set(m.methods);
  const paths = m.paths?.map(compileGlob);
  const intent = m.intent === undefined ? undefined : compileIntent(m.intent);
  const mcp = compileMcpMatch(m.mcp, rule.effect);
  const time: TimeMatcher | undefined =
    m.time === undefined ? undefined : compileTimeWindow(m.time);
  const depth =
    m.delegation === undefined
      ? undefined
      : {
          min: m.delegation.min_depth ?? 0,
          max: m.delegation.max_depth ?? Number.POSITIVE_INFINITY,
        };
  return {
    rule,
    test(input) {
      if (services !== undefined && !services.has(input.service)) return 'services';
      if (agents !== undefined && !agents.has(input.agent)) return 'agents';
      if (roles !== undefined && !input.roles.some((r) => roles.has(r))) return 'roles';
      if (depth !== undefined) {
        const d = input.delegation?.length ?? 0;
        if (d < depth.min || d > depth.max) return 'delegation';
      }
      if (methods !== undefined && !methods.has(input.method.toUpperCase())) return 'methods';
      if (paths !== undefined && !paths.some((re) => re.test(input.path))) return 'paths';
      if (!mcp(input.mcp)) return 'mcp';
      if (intent !== undefined && !intent.test(input.intent)) return 'intent';
      if (time !== undefined && !time(input.now)) return 'time';
      return undefined;
    },
  };
}

/** Checks rules against the names they refer to and re-checks every matcher. */
export function validatePolicies(source: PolicySource): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (path: (string | number)[], message: string): void => {
    issues.push({ path: joinPath(path), message });
  };
  const ids = new Set<string>();
  source.policies.forEach((rule, i) => {
    if (ids.has(rule.id)) add(['policies', i, 'id'], 'duplicate rule id');
    ids.add(rule.id);
    const m = rule.match;
    const at = ['policies', i, rule.effect];
    m.services?.forEach((s, j) => {
      if (!Object.hasOwn(source.services, s))
        add([...at, 'services', j], 'unknown service (not under services:)');
    });
    if (m.mcp !== undefined) {
      m.services?.forEach((s, j) => {
        const svc = source.services[s] as { kind?: unknown } | undefined;
        if (svc !== undefined && svc.kind !== 'mcp')
          add([...at, 'services', j], 'an mcp matcher names a service that is not kind: mcp');
      });
    }
    m.agents?.forEach((a, j) => {
      if (!Object.hasOwn(source.agents, a))
        add([...at, 'agents', j], 'unknown agent (not under agents:)');
    });
    m.paths?.forEach((g, j) => {
      const problem = globProblem(g);
      if (problem !== undefined) add([...at, 'paths', j], problem);
    });
    if (m.intent !== undefined) {
      try {
        compileIntent(m.intent);
      } catch {
        add([...at, 'intent'], 'must be a valid regular expression');
      }
    }
    if (m.time !== undefined) {
      if (!isValidTimeZone(m.time.tz))
        add([...at, 'time', 'tz'], 'must be UTC or an IANA time zone');
      const from = parseHhMm(m.time.from);
      const to = parseHhMm(m.time.to);
      if (from === undefined || from === 1440)
        add([...at, 'time', 'from'], 'must be HH:MM (00:00-23:59)');
      if (to === undefined) add([...at, 'time', 'to'], 'must be HH:MM (00:00-24:00)');
      if (from !== undefined && from === to) add([...at, 'time', 'to'], 'must differ from "from"');
    }
  });
  return issues;
}

/** The canonical form hashed into {@link CompiledPolicy.hash}. */
export function canonicalPolicy(source: PolicySource): string {
  const agents: Record<string, string[]> = {};
  for (const [name, a] of Object.entries(source.agents))
    agents[name] = [...new Set(a.roles)].sort();
  // `approval` only where set: the hash of a policy without approve rules is unchanged.
  const rules = source.policies.map((r) =>
    r.approval === undefined
      ? { id: r.id, effect: r.effect, match: r.match }
      : { id: r.id, effect: r.effect, match: r.match, approval: r.approval },
  );
  return canonicalize({ nexus_policy: 1, rules, agents });
}

/**
 * Compiles the policy of a validated config (or any {@link PolicySource}).
 *
 * @throws ConfigError (`config_invalid`) if a rule names an unknown service or agent, or
 *   has a bad glob, pattern or time window.
 * @example
 * const policy = compilePolicy(config);
 * policy.evaluate({ agent: 'bot', roles: ['triage'], service: 'github', method: 'GET',
 *   path: '/repos/a/b/issues', intent: 'triage', now: Date.now() }).decision;
 */
export function compilePolicy(source: PolicySource): CompiledPolicy {
  const issues = validatePolicies(source);
  if (issues.length > 0) throw new ConfigError(issues);

  const compiled = source.policies.map(compileRule);
  // Index: per known service, the rules naming it or naming no service, in config order.
  const global = compiled.filter((c) => c.rule.match.services === undefined);
  const byService = new Map<string, readonly CompiledRule[]>();
  for (const name of Object.keys(source.services)) {
    byService.set(
      name,
      compiled.filter(
        (c) => c.rule.match.services === undefined || c.rule.match.services.includes(name),
      ),
    );
  }
  const candidates = (service: string): readonly CompiledRule[] =>
    (Object.hasOwn(source.services, service) ? byService.get(service) : undefined) ?? global;

  const approvalOf = new Map(
    source.policies.flatMap((r) => (r.approval === undefined ? [] : [[r.id, r.approval] as const])),
  );
  // deny > approve > allow: an approve rule makes an otherwise allowed request wait.
  const decide = (allowIds: string[], denyIds: string[], approveIds: string[]): PolicyDecision => {
    if (denyIds.length > 0) {
      return {
        decision: 'deny',
        ruleIds: denyIds,
        reasons: denyIds.map((id) => `denied by rule ${id}`),
      };
    }
    const first = approveIds[0];
    if (first !== undefined) {
      return {
        decision: 'allow',
        ruleIds: approveIds,
        reasons: approveIds.map((id) => `allowed once approved, by rule ${id}`),
        approval: { ruleId: first, ...(approvalOf.get(first) as ApprovalSettings) },
      };
    }
    if (allowIds.length > 0) {
      return {
        decision: 'allow',
        ruleIds: allowIds,
        reasons: allowIds.map((id) => `allowed by rule ${id}`),
      };
    }
    return {
      decision: 'deny',
      ruleIds: [],
      reasons: ['no rule allows this request (default deny)'],
    };
  };

  const policy: CompiledPolicy = {
    hash: sha256Hex(canonicalPolicy(source)),
    evaluate(input) {
      const ids = { allow: [] as string[], deny: [] as string[], approve: [] as string[] };
      for (const c of candidates(input.service)) {
        if (c.test(input) !== undefined) continue;
        ids[c.rule.effect].push(c.rule.id);
      }
      return decide(ids.allow, ids.deny, ids.approve);
    },
    explain(input) {
      const ids = { allow: [] as string[], deny: [] as string[], approve: [] as string[] };
      const rules: RuleExplanation[] = compiled.map((c) => {
        const failed = c.test(input);
        const { id, effect } = c.rule;
        if (failed === undefined) {
          ids[effect].push(id);
          return { id, effect, matched: true, reason: 'every condition matches' };
        }
        return { id, effect, matched: false, failed, reason: FAIL_REASON[failed] };
      });
      return { ...decide(ids.allow, ids.deny, ids.approve), rules };
    },
    rulesFor(service) {
      return candidates(service).map((c) => c.rule);
    },
  };
  return Object.freeze(policy);
}
