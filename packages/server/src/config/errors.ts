// Config errors: one error carrying every problem found in a config file, so an operator
// fixes them all in one pass. Used by config loading and by policy compilation.

/** One problem in a config: a dotted path (`services.github.auth.type`) and a reason. */
export interface ConfigIssue {
  /** Dotted path to the offending key; array items as `[i]`. Empty for the whole file. */
  readonly path: string;
  /** Why the value is rejected. MUST NOT contain a secret. */
  readonly message: string;
  /** 1-based line in the source file, when known. */
  readonly line?: number;
  /** 1-based column in the source file, when known. */
  readonly column?: number;
}

/**
 * Thrown when a config (or a policy set) is invalid. `code` is always `config_invalid`;
 * `issues` lists every problem. The message is one `file: path: reason` line per issue.
 *
 * TODO: extend `NexusError` from `@nexus-proxy/protocol` once it exports one with `config_invalid`.
 */
export class ConfigError extends Error {
  /** Stable error code. */
  readonly code = 'config_invalid' as const;
  /** HTTP status if this ever reaches the admin API. */
  readonly status = 500;
  /** Config problems are operator-facing, never exposed to agents. */
  readonly expose = false;
  /** Every problem found, in document order where known. */
  readonly issues: readonly ConfigIssue[];
  /** The config file, when loaded from disk. */
  readonly file: string | undefined;

  constructor(issues: readonly ConfigIssue[], file?: string) {
    super(formatIssues(issues, file));
    this.name = 'ConfigError';
    this.issues = issues;
    this.file = file;
  }
}

/** Renders issues as `file:line: path: reason` lines under a one-line summary. */
export function formatIssues(issues: readonly ConfigIssue[], file?: string): string {
  const head = `invalid configuration: ${issues.length} problem${issues.length === 1 ? '' : 's'}`;
  const lines = issues.map((i) => {
    const where =
      file === undefined ? '' : i.line === undefined ? `${file}: ` : `${file}:${i.line}: `;
    const path = i.path === '' ? '' : `${i.path}: `;
    return `${where}${path}${i.message}`;
  });
  return [head, ...lines].join('\n');
}

/** Joins a zod/YAML path into the dotted form used in issues: `a.b[0].c`. */
export function joinPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}
