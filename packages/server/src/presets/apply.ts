/**
 * Turning a preset into a `services.<name>` entry: placeholder filling, the JSON form
 * `nexus service presets --json` prints, the credential instructions `service add` prints,
 * and writing the entry into nexus.yaml with the `yaml` Document API so the rest of the
 * file, its order and its comments stay as they were.
 */
import { isMap, parseDocument, stringify, type YAMLMap } from 'yaml';
import { NexusError } from '@nexus-proxy/protocol';
import type { ServicePreset } from './presets.js';

// `{name}`, but not the `{{field}}` of a header template.
const PLACEHOLDER = /(?<!\{)\{([a-z_][a-z0-9_]*)\}(?!\})/g;

/** Options for {@link renderPresetService}. */
export interface RenderOptions {
  /** The vault credential name the service uses. */
  readonly credential: string;
  /** Replaces the preset's upstream (a test server, a regional or enterprise host). */
  readonly upstream?: string;
  /** Values for the preset's `{variables}`. */
  readonly vars?: Readonly<Record<string, string>>;
}

/** A rendered service entry, as written under `services.<name>` in nexus.yaml. */
export interface PresetServiceEntry {
  upstream: string;
  auth: Record<string, unknown>;
  scrub?: { remove_headers: string[] };
  env?: Record<string, string>;
  hosts?: string[];
  cost?: { json: string[] };
}

/** The variables a preset uses in its upstream and options, in order of appearance. */
export function presetVariables(preset: ServicePreset): string[] {
  const names: string[] = [];
  const scan = (v: unknown): void => {
    if (typeof v === 'string') {
      for (const m of v.matchAll(PLACEHOLDER)) {
        const name = m[1] as string;
        if (!names.includes(name)) names.push(name);
      }
    } else if (Array.isArray(v)) v.forEach(scan);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(scan);
  };
  scan(preset.upstream);
  scan(preset.auth);
  return names;
}

/**
 * Builds the service entry for a preset. A variable without a value (from `vars`, else its
 * default) is a `validation_failed` error naming the variable; a variable used only in the
 * upstream is not needed when `upstream` is given.
 */
export function renderPresetService(
  preset: ServicePreset,
  options: RenderOptions,
): PresetServiceEntry {
  const vars = options.vars ?? {};
  const missing: string[] = [];
  const fill = (s: string): string =>
    s.replace(PLACEHOLDER, (whole, name: string) => {
      const value = Object.hasOwn(vars, name) ? vars[name] : preset.variables?.[name]?.default;
      if (value === undefined) {
        if (!missing.includes(name)) missing.push(name);
        return whole;
      }
      return value;
    });
  const deep = (v: unknown): unknown =>
    typeof v === 'string'
      ? fill(v)
      : Array.isArray(v)
        ? v.map(deep)
        : typeof v === 'object' && v !== null
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deep(x)]))
          : v;
  const upstream = options.upstream ?? fill(preset.upstream);
  const { type, ...rest } = preset.auth;
  const auth = { type, credential: options.credential, ...(deep(rest) as object) };
  if (missing.length > 0) {
    throw new NexusError(
      'validation_failed',
      `preset "${preset.id}" needs ${missing.map((m) => `--var ${m}=<${m}>`).join(' ')}`,
    );
  }
  const entry: PresetServiceEntry = { upstream, auth };
  if (preset.removeHeaders.length > 0) entry.scrub = { remove_headers: [...preset.removeHeaders] };
  if (preset.env !== undefined) entry.env = { ...preset.env };
  if (preset.cost !== undefined) entry.cost = { json: [...preset.cost.json] };
  // The host the provider's SDKs and tools call, also when --upstream sends the traffic
  // elsewhere (a test server, a gateway): the forward proxy routes that host to it.
  const host = presetHost(
    preset.upstream.replace(PLACEHOLDER, (whole, name: string) =>
      Object.hasOwn(vars, name)
        ? (vars[name] as string)
        : (preset.variables?.[name]?.default ?? whole),
    ),
  );
  if (host !== undefined) entry.hosts = [host];
  return entry;
}

/** The host name of a filled-in preset upstream; undefined while a variable is missing. */
function presetHost(upstream: string): string | undefined {
  if (upstream.search(PLACEHOLDER) !== -1) return undefined;
  try {
    return new URL(upstream).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/** The JSON object `nexus service presets --json` prints for a preset. */
export function presetToJson(preset: ServicePreset): Record<string, unknown> {
  const { type, ...options } = preset.auth;
  return {
    id: preset.id,
    name: preset.name,
    upstream: preset.upstream,
    mechanic: type,
    options,
    credential_fields: preset.fields.map((f) => ({
      name: f.name,
      description: f.description,
      optional: f.optional === true,
    })),
    remove_headers: [...preset.removeHeaders],
    variables: Object.fromEntries(
      Object.entries(preset.variables ?? {}).map(([k, v]) => [k, { ...v }]),
    ),
    docs: preset.docs,
    ...(preset.note === undefined ? {} : { note: preset.note }),
    ...(preset.env === undefined ? {} : { env: { ...preset.env } }),
    ...(preset.cost === undefined ? {} : { cost: { json: [...preset.cost.json] } }),
  };
}

/**
 * The commands that store the preset's credential. One required field: a single value on
 * stdin. Several: a JSON object on stdin (PEM values keep their newlines).
 */
export function credentialInstructions(preset: ServicePreset, credential: string): string[] {
  const required = preset.fields.filter((f) => f.optional !== true);
  const lines = preset.fields.map(
    (f) => `    ${f.name}${f.optional === true ? ' (optional)' : ''}: ${f.description}`,
  );
  if (preset.fields.length === 1 && required[0]?.name === 'value') {
    return [
      `Set its credential (fields: value):`,
      ...lines,
      `  printf %s "$TOKEN" | nexus credential set ${credential}`,
    ];
  }
  const example = Object.fromEntries(required.map((f) => [f.name, '...']));
  return [
    `Set its credential (fields: ${preset.fields.map((f) => f.name).join(', ')}):`,
    ...lines,
    `  echo '${JSON.stringify(example)}' | nexus credential set ${credential} --format json`,
  ];
}

/**
 * Adds `services.<name>: entry` to nexus.yaml text and returns the new text.
 *
 * When `services` is a block mapping with entries (the `nexus init` layout), the entry is
 * spliced in as text after the last service, so every other byte of the file (order,
 * comments, alignment) is unchanged. Otherwise (no `services`, `services: {}`) the file is
 * rewritten through the `yaml` Document API, which keeps comments but may re-space them.
 * Either way the result is checked to hold exactly `entry` under `services.<name>`.
 *
 * @throws NexusError `conflict` when the service exists, `validation_failed` when the text
 * is not a YAML mapping or `services` is not a mapping.
 */
export function addServiceToConfigText(
  text: string,
  name: string,
  entry: PresetServiceEntry,
): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0 || (doc.contents !== null && !isMap(doc.contents))) {
    throw new NexusError('validation_failed', 'the config file is not a YAML mapping');
  }
  const services: unknown = doc.get('services', true);
  if (services !== undefined && !isMap(services) && doc.get('services') !== null) {
    throw new NexusError('validation_failed', 'services in the config file is not a mapping');
  }
  if (isMap(services) && services.has(name)) {
    throw new NexusError('conflict', `service "${name}" already exists`);
  }
  const spliced = isMap(services) ? splice(text, services, name, entry) : undefined;
  if (spliced !== undefined && holds(spliced, name, entry)) return spliced;

  if (isMap(services)) {
    services.flow = false;
    services.set(doc.createNode(name), doc.createNode(entry));
  } else {
    doc.set('services', doc.createNode({ [name]: entry }));
  }
  const out = doc.toString();
  if (!holds(out, name, entry)) {
    throw new NexusError('validation_failed', 'could not add the service to the config file');
  }
  return out;
}

/** Inserts the entry as text after the last item of a non-empty block mapping. */
function splice(
  text: string,
  services: YAMLMap,
  name: string,
  entry: PresetServiceEntry,
): string | undefined {
  const first = services.items[0]?.key as { range?: [number, number, number] } | undefined;
  const range = services.range;
  if (services.flow === true || first?.range === undefined || range == null) {
    return undefined;
  }
  const keyStart = first.range[0];
  const indent = keyStart - (text.lastIndexOf('\n', keyStart - 1) + 1);
  const last = services.items[services.items.length - 1]?.key as
    { range?: [number, number, number] } | undefined;
  if (last?.range === undefined) return undefined;
  // Insert after the last line that belongs to the last service: content, or a comment
  // indented deeper than the service keys. Comments at the key level or above (the next
  // section's heading) stay below the new entry.
  let at = text.lastIndexOf('\n', last.range[0]) + 1;
  let pos = at;
  const stop = Math.min(text.length, range[2]);
  while (pos < stop) {
    const nl = text.indexOf('\n', pos);
    const lineEnd = nl === -1 ? text.length : nl;
    const line = text.slice(pos, lineEnd);
    const trimmed = line.trimStart();
    const depth = line.length - trimmed.length;
    const belongs = trimmed !== '' && (!trimmed.startsWith('#') || depth > indent);
    if (belongs) at = nl === -1 ? text.length : nl + 1;
    pos = lineEnd + 1;
  }
  const prefix = at > 0 && text[at - 1] !== '\n' ? '\n' : '';
  const block = stringify({ [name]: entry }, { indent: 2 })
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => ' '.repeat(indent) + line)
    .join('\n');
  return `${text.slice(0, at)}${prefix}${block}\n${text.slice(at)}`;
}

/** True when `text` parses and holds exactly `entry` at `services.<name>`. */
function holds(text: string, name: string, entry: PresetServiceEntry): boolean {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return false;
  const got: unknown = doc.toJS()?.services?.[name];
  return JSON.stringify(got) === JSON.stringify(entry);
}
