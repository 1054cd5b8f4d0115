/** Plain-text tables for human output (`--json` gives machine output). */
export function printTable(out: (s: string) => void, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd() + '\n';
  out(line(header));
  for (const r of rows) out(line(r));
  if (rows.length === 0) out('(none)\n');
}
