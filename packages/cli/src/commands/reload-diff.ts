/**
 * `nexus reload`'s summary of what changed against the running configuration (the admin
 * API's `changes`): one line per section with something added, removed or changed.
 */

type SectionDiff = { added: string[]; removed: string[]; changed: string[] };

/**
 * The diff as text, or a line saying nothing changed.
 *
 * @example
 * reloadDiffText({ services: { added: ['gh'], removed: [], changed: ['echo'] } })
 * // '  services: + gh  ~ echo\n'
 */
export function reloadDiffText(changes: Record<string, SectionDiff> | undefined): string {
  if (changes === undefined) return '';
  const lines: string[] = [];
  for (const [section, d] of Object.entries(changes)) {
    const parts = [
      ...d.added.map((n) => `+ ${n}`),
      ...d.removed.map((n) => `- ${n}`),
      ...d.changed.map((n) => `~ ${n}`),
    ];
    if (parts.length > 0) lines.push(`  ${section}: ${parts.join('  ')}`);
  }
  if (lines.length === 0) return 'No change to services, agents, policies or limits.\n';
  return `Changes (+ added, - removed, ~ changed):\n${lines.join('\n')}\n`;
}
