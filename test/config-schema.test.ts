/**
 * Issue 15 (CLI and config polish): the JSON Schema of nexus.yaml, generated from the zod
 * schema for editor completion. The committed docs/nexus.schema.json is what a fresh
 * generation gives (so it cannot go stale); it accepts every config we write or document
 * and rejects unknown keys and bad values, like the loader; and the real `nexus init` writes
 * it next to nexus.yaml with the modeline pointing at it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  configJsonSchemaText,
  getPreset,
  parseConfig,
  PRESETS,
  renderExampleConfig,
  renderPresetService,
} from '@nexus-proxy/server';
import { runCli } from './helpers/node.js';

const REPO = join(import.meta.dirname, '..');
const COMMITTED = readFileSync(join(REPO, 'docs/nexus.schema.json'), 'utf8');
const schema = JSON.parse(COMMITTED) as { properties: Record<string, unknown> };

// strict: an unknown keyword or format in the generated schema is an error, not ignored.
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
ajv.addFormat('uri', (s: string) => URL.canParse(s));
const validate = ajv.compile(schema);

function errorsOf(doc: unknown): ErrorObject[] {
  return validate(doc) ? [] : [...(validate.errors ?? [])];
}

/** Top-level mappings of the ```yaml blocks in README.md and docs/ that are nexus.yaml. */
function documentedConfigs(): Array<[string, Record<string, unknown>]> {
  const files = ['README.md'];
  const walk = (dir: string): void => {
    for (const f of readdirSync(join(REPO, dir))) {
      const p = join(dir, f);
      if (statSync(join(REPO, p)).isDirectory()) walk(p);
      else if (p.endsWith('.md')) files.push(p);
    }
  };
  walk('docs');
  const keys = new Set(Object.keys(schema.properties));
  const found: Array<[string, Record<string, unknown>]> = [];
  for (const file of files) {
    const text = readFileSync(join(REPO, file), 'utf8');
    for (const m of text.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
      const doc = parse(m[1] ?? '') as unknown;
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) continue;
      // Other YAML (prometheus.yml, compose files) is not nexus.yaml.
      if (!Object.keys(doc).every((k) => keys.has(k))) continue;
      found.push([file, { version: 1, ...(doc as Record<string, unknown>) }]);
    }
  }
  return found;
}

describe('docs/nexus.schema.json', () => {
  it('is what scripts/gen-config-schema.mjs generates now (regenerate it when this fails)', () => {
    expect(configJsonSchemaText()).toBe(COMMITTED);
  });

  it('offers every auth type with its own keys, and says what it cannot check', () => {
    const auth = (
      schema as unknown as {
        properties: {
          services: {
            additionalProperties: {
              properties: { auth: { oneOf: Array<{ properties: Record<string, unknown> }> } };
            };
          };
        };
      }
    ).properties.services.additionalProperties.properties.auth;
    const types = auth.oneOf.map((v) => (v.properties.type as { const: string }).const);
    expect(types).toEqual(expect.arrayContaining(['none', 'bearer', 'aws_sigv4', 'mtls']));
    expect(types).toHaveLength(13);
    expect(COMMITTED).toContain('Checked as text here and by `nexus` at start-up only');
  });

  it('accepts the nexus.yaml that nexus init writes, with its options', () => {
    for (const text of [
      renderExampleConfig(),
      renderExampleConfig({
        proxyListen: '[::1]:9070',
        adminListen: '[::1]:9071',
        store: 'postgres://nexus@db.internal/nexus',
        agent: 'triage-bot',
        role: 'triage',
      }),
      // Every unit form the loader accepts passes the duration and size patterns.
      'version: 1\nauthority: { lease_ttl: 1h30m, clock_skew: 500ms, key_rotation: "off" }\n' +
        'proxy: { max_body: 1048576, max_header_size: " 16 KiB ", timeouts: { body: 7d } }\n',
    ]) {
      expect(errorsOf(parse(text))).toEqual([]);
      expect(() => parseConfig(parse(text), { baseDir: '/srv' })).not.toThrow();
    }
  });

  it('accepts every nexus.yaml example in README.md and docs/', () => {
    const docs = documentedConfigs();
    // Guards the extraction itself: docs/mechanics alone has one example per mechanic.
    expect(docs.length).toBeGreaterThanOrEqual(15);
    // Schema only: fragments refer to services or rules defined elsewhere on their page,
    // cross-field rules the schema leaves to the loader.
    for (const [file, doc] of docs) expect([file, errorsOf(doc)]).toEqual([file, []]);
  });

  it('accepts deploy/docker/cluster/nexus.yaml and a service from every preset', () => {
    const cluster = readFileSync(join(REPO, 'deploy/docker/cluster/nexus.yaml'), 'utf8');
    expect(errorsOf(parse(cluster))).toEqual([]);
    for (const preset of PRESETS) {
      const vars = Object.fromEntries(
        Object.entries(preset.variables ?? {}).map(([k, v]) => [k, v.example]),
      );
      const entry = renderPresetService(getPreset(preset.id)!, { credential: 'c', vars });
      const doc = JSON.parse(JSON.stringify({ version: 1, services: { svc: entry } })) as unknown;
      expect([preset.id, errorsOf(doc)]).toEqual([preset.id, []]);
    }
  });

  it.each([
    ['an unknown top-level key', { sevices: {} }, 'additionalProperties'],
    ['an unknown key in a section', { log: { levl: 'info' } }, 'additionalProperties'],
    [
      'an unknown key in an auth block',
      {
        services: {
          gh: { upstream: 'https://x', auth: { type: 'bearer', credential: 'c', tokn: 1 } },
        },
      },
      'oneOf',
    ],
    ['a bad enum value', { log: { level: 'loud' } }, 'enum'],
    ['a duration without a unit', { authority: { lease_ttl: '15 min' } }, 'pattern'],
    ['a size with an unknown unit', { proxy: { max_body: '10mb' } }, 'pattern'],
    ['a wrong type', { proxy: { replay_cache_size: 'many' } }, 'type'],
    [
      'an unknown auth type',
      { services: { gh: { upstream: 'https://x', auth: { type: 'nope' } } } },
      'enum',
    ],
    [
      'a bad service name',
      { services: { GH: { upstream: 'https://x', auth: { type: 'none' } } } },
      'pattern',
    ],
    ['a missing version', { version: undefined }, 'required'],
  ])('rejects %s, as the loader does', (_name, patch, keyword) => {
    const doc = JSON.parse(JSON.stringify({ version: 1, ...patch })) as Record<string, unknown>;
    expect(errorsOf(doc).map((e) => e.keyword)).toContain(keyword);
    expect(() => parseConfig(doc, { baseDir: '/srv' })).toThrow();
  });
});

describe('nexus init and the schema (CLI)', () => {
  it('writes nexus.schema.json next to nexus.yaml, whose first line points editors at it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nexus-schema-'));
    const r = await runCli(['init', '--dir', dir]);
    expect(r.code).toBe(0);
    const yaml = await readFile(join(dir, 'nexus.yaml'), 'utf8');
    expect(yaml.split('\n')[0]).toBe('# yaml-language-server: $schema=./nexus.schema.json');
    expect(await readFile(join(dir, 'nexus.schema.json'), 'utf8')).toBe(COMMITTED);
    expect(errorsOf(parse(yaml))).toEqual([]);
  });
});
