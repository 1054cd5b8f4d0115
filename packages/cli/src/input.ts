/** Reading secrets for `credential set`: from stdin only (never from an argument). */
import { CliError } from './admin-client.js';

export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) {
    process.stderr.write('Reading the value from stdin (end with Ctrl-D)...\n');
  }
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses stdin into credential fields. A single value loses one trailing newline. */
export function parseFields(
  text: string,
  format: 'value' | 'json' | 'env',
  field: string,
): Record<string, string> {
  if (format === 'value') {
    const value = text.replace(/\r?\n$/, '');
    if (value === '') throw new CliError('no value on stdin');
    return { [field]: value };
  }
  if (format === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CliError('stdin is not a JSON object of string fields');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CliError('stdin is not a JSON object of string fields');
    }
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== 'string') throw new CliError(`field ${k} is not a string`);
      out[k] = v;
    }
    return out;
  }
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const i = line.indexOf('=');
    if (i <= 0) throw new CliError('env format wants KEY=VALUE lines');
    out[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  if (Object.keys(out).length === 0) throw new CliError('no fields on stdin');
  return out;
}
