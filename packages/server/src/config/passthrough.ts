/**
 * Passthrough tunnels (issue 11): `passthrough:` in nexus.yaml names hosts no service owns
 * that `nexus run`'s forward proxy may tunnel blind for some agents (a package index, a
 * docs site). A blind tunnel is neither intercepted nor given a credential; the node decides
 * and audits each one (`POST /v1/agent/passthrough`, docs/spec §12.6) before the sidecar
 * opens it.
 *
 * MUST: nothing is tunnelled by default: no rule, no tunnel. MUST: a rule names its
 * agents or roles (never "everyone" implicitly). A host some service owns is never
 * passthrough: the sidecar routes it to the service first.
 */
import { z } from 'zod';
import { AGENT_NAME_RE, ROLE_NAME_RE, RULE_ID_RE } from './names.js';

/** A lower-case DNS label. */
const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
/** `name.example`, `*.example` (any name under it, not the name itself) or an IPv4 literal. */
const PASSTHROUGH_HOST_RE = new RegExp(
  `^(?=.{1,253}$)((\\*\\.)?${LABEL}(\\.${LABEL})*|(\\d{1,3}\\.){3}\\d{1,3})$`,
);

/** One `passthrough:` rule. */
export interface PassthroughRule {
  readonly id: string;
  /** Lower-case host names; `*.example.org` matches every name under example.org. */
  readonly hosts: readonly string[];
  readonly agents?: readonly string[];
  readonly roles?: readonly string[];
  /** TCP ports the tunnel may reach (default 443). */
  readonly ports: readonly number[];
}

export const passthroughSchema = z
  .array(
    z
      .strictObject({
        id: z.string().regex(RULE_ID_RE, 'rule ids are letters, digits, ".", "_", "-"'),
        hosts: z
          .array(
            z
              .string()
              .transform((s) => s.toLowerCase())
              .pipe(
                z
                  .string()
                  .regex(
                    PASSTHROUGH_HOST_RE,
                    'must be a DNS name, "*.<name>" or an IPv4 address, without port',
                  ),
              ),
          )
          .min(1),
        agents: z.array(z.string().regex(AGENT_NAME_RE)).min(1).optional(),
        roles: z.array(z.string().regex(ROLE_NAME_RE)).min(1).optional(),
        ports: z.array(z.number().int().min(1).max(65535)).min(1).prefault([443]),
      })
      .refine(
        (r) => r.agents !== undefined || r.roles !== undefined,
        'a passthrough rule names its agents or roles',
      ),
  )
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    for (const [i, r] of rules.entries()) {
      if (seen.has(r.id))
        ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate rule id "${r.id}"` });
      seen.add(r.id);
    }
  })
  .prefault([]);

/** Whether `pattern` (a rule's host) matches the lower-case `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.'))
    return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

/**
 * The rule that lets `agent` (with `roles`) tunnel to `host:port`, or undefined. The first
 * matching rule in file order decides (its id is audited).
 */
export function passthroughRuleFor(
  rules: readonly PassthroughRule[],
  agent: string,
  roles: readonly string[],
  host: string,
  port: number,
): PassthroughRule | undefined {
  const h = host.toLowerCase();
  return rules.find(
    (r) =>
      (r.agents?.includes(agent) === true || r.roles?.some((x) => roles.includes(x)) === true) &&
      r.ports.includes(port) &&
      r.hosts.some((p) => hostMatches(p, h)),
  );
}
