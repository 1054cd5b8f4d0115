// The JSON form of a policy explanation, as the admin API and `nexus policy explain --json`
// print it: snake_case keys like every other Nexus output (`rule_ids`, not `ruleIds`).
import type { PolicyExplanation } from './compile.js';

/** A {@link PolicyExplanation} with snake_case keys. */
export interface PolicyExplanationJson {
  readonly decision: 'allow' | 'deny';
  readonly rule_ids: readonly string[];
  readonly reasons: readonly string[];
  readonly rules: PolicyExplanation['rules'];
}

/** Converts an explanation to its JSON form. */
export function explanationJson(e: PolicyExplanation): PolicyExplanationJson {
  return { decision: e.decision, rule_ids: e.ruleIds, reasons: e.reasons, rules: e.rules };
}
