// The `mcp` matcher of a policy rule: MCP methods, tool names, resource URIs and prompt
// names (docs/mcp.md, "Policy"). Its globs have one wildcard, `*`, for any run of
// characters (`/` included: tool names and URIs have no path segments to respect).
import { z } from 'zod';
import type { McpTarget } from '../mcp/message.js';

/** Most characters in one MCP glob. */
export const MAX_MCP_GLOB = 1024;

/** The `mcp:` block of a rule. Absent lists match nothing of their kind (see {@link compileMcpMatch}). */
export interface McpMatch {
  /** JSON-RPC method globs, e.g. `tools/call`, `notifications/*`. */
  readonly methods?: readonly string[];
  /** Tool name globs (`tools/call`). */
  readonly tools?: readonly string[];
  /** Resource URI globs (`resources/read`, `resources/subscribe`, completion of a template). */
  readonly resources?: readonly string[];
  /** Prompt name globs (`prompts/get`, completion of a prompt argument). */
  readonly prompts?: readonly string[];
}

const globs = z
  .array(z.string().min(1).max(MAX_MCP_GLOB))
  .min(1, 'must not be empty; omit the field to match any')
  .transform((a) => [...new Set(a)].sort());

/** Schema of the `mcp:` block. */
export const mcpMatchSchema = z
  .strictObject({
    methods: globs.optional(),
    tools: globs.optional(),
    resources: globs.optional(),
    prompts: globs.optional(),
  })
  .refine(
    (m) => Object.values(m).some((v) => v !== undefined),
    'name at least one of methods, tools, resources, prompts',
  );

/** Compiles an MCP glob to a full-match RegExp (`*`: any characters, newlines included). */
export function compileMcpGlob(glob: string): RegExp {
  const body = glob
    .split('*')
    .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
    .join('[\\s\\S]*');
  return new RegExp(`^${body}$`, 'u');
}

/**
 * The MCP test of one rule, given what the request is.
 *
 * - A rule without `mcp`: an allow rule admits every request that is not an MCP call of
 *   something (non-MCP services, and MCP protocol messages: initialize, lists, ping,
 *   notifications); it never allows a tool, resource, prompt or unknown method. A deny
 *   rule matches everything, as it always did. Default deny for tools follows.
 * - A rule with `mcp`: matches MCP messages only. `methods` (when set) must match the
 *   method. A call naming a tool, resource or prompt matches when the rule lists that kind
 *   and a glob matches the name, or, when it lists no names of that kind, when it set
 *   `methods` (the rule then speaks of the whole method). Any other message matches when
 *   `methods` is set and matched.
 */
export function compileMcpMatch(
  match: McpMatch | undefined,
  effect: 'allow' | 'deny' | 'approve',
): (target: McpTarget | undefined) => boolean {
  if (match === undefined) {
    if (effect === 'deny') return () => true;
    return (t) => t === undefined || t.protocol;
  }
  const methods = match.methods?.map(compileMcpGlob);
  const lists = {
    tool: match.tools?.map(compileMcpGlob),
    resource: match.resources?.map(compileMcpGlob),
    prompt: match.prompts?.map(compileMcpGlob),
  };
  return (t) => {
    if (t === undefined || t.method === undefined) return false;
    const method = t.method;
    if (methods !== undefined && !methods.some((re) => re.test(method))) return false;
    if (t.kind !== undefined) {
      const list = lists[t.kind];
      const name = t.name ?? '';
      return list !== undefined ? list.some((re) => re.test(name)) : methods !== undefined;
    }
    return methods !== undefined;
  };
}
