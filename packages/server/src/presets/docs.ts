/**
 * The presets table of docs/mechanics/presets.md, generated from `PRESETS` so the docs
 * cannot drift from the data (test/presets.test.ts compares them).
 */
import { PRESETS, type ServicePreset } from './presets.js';

/** Marks the generated part of docs/mechanics/presets.md. */
export const PRESET_TABLE_BEGIN =
  '<!-- presets:begin (generated from packages/server/src/presets/presets.ts) -->';
export const PRESET_TABLE_END = '<!-- presets:end -->';

const cell = (s: string): string => s.replace(/\|/g, '\\|');

function mechanicOf(p: ServicePreset): string {
  const { type, ...options } = p.auth;
  const shown = Object.entries(options)
    .filter(([k]) => k === 'name' || k === 'template' || k === 'installation_id')
    .map(([k, v]) => `${k}: ${String(v)}`);
  return shown.length === 0 ? `\`${type}\`` : `\`${type}\` (${cell(shown.join(', '))})`;
}

/** The markdown table, one row per preset, between the markers. */
export function renderPresetTable(presets: readonly ServicePreset[] = PRESETS): string {
  const rows = presets.map((p) =>
    [
      `\`${p.id}\``,
      cell(p.name),
      `\`${p.upstream}\``,
      mechanicOf(p),
      p.fields.map((f) => `\`${f.name}\`${f.optional === true ? '?' : ''}`).join(', '),
      p.removeHeaders.length === 0 ? '' : p.removeHeaders.map((h) => `\`${h}\``).join(', '),
      `[docs](${p.docs})`,
    ].join(' | '),
  );
  return [
    PRESET_TABLE_BEGIN,
    '',
    '| id | service | upstream | mechanic | credential fields | extra scrubbed headers | provider auth docs |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r} |`),
    '',
    PRESET_TABLE_END,
  ].join('\n');
}
