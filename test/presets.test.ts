/**
 * Issue 5 item 8: the service presets as data. Every preset becomes a valid
 * `services.<name>` entry under the real config schema (with the mechanics registered), its
 * variables and fields are coherent, docs/mechanics/presets.md holds the table generated from
 * the data, and adding a service keeps the rest of nexus.yaml byte for byte.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import {
  addServiceToConfigText,
  getPreset,
  parseConfig,
  parseConfigText,
  presetToJson,
  presetVariables,
  PRESETS,
  renderExampleConfig,
  renderPresetService,
  renderPresetTable,
} from '@nexus-proxy/server';
import { isNexusError } from '@nexus-proxy/protocol';

const REPO = join(import.meta.dirname, '..');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : 'not-nexus';
  }
}

function exampleVars(id: string): Record<string, string> {
  const preset = getPreset(id);
  return Object.fromEntries(
    Object.entries(preset?.variables ?? {}).map(([k, v]) => [k, v.example]),
  );
}

describe('service presets', () => {
  it('has at least 30 presets with unique ids, including those the issue names', () => {
    expect(PRESETS.length).toBeGreaterThanOrEqual(30);
    const ids = PRESETS.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of [
      'github',
      'github-app',
      'gitlab',
      'slack',
      'openai',
      'anthropic',
      'google',
      'microsoft-graph',
      'azure',
      'aws',
      'stripe',
      'notion',
      'linear',
      'jira',
      'confluence',
      'salesforce',
      'hubspot',
      'twilio',
      'sendgrid',
      'datadog',
      'pagerduty',
      'zendesk',
      'shopify',
      'airtable',
      'asana',
      'discord',
      'cloudflare',
      'vercel',
      'supabase',
      'sentry',
      'mailgun',
    ]) {
      expect(ids, id).toContain(id);
    }
  });

  it.each(PRESETS.map((p) => [p.id]))(
    '%s becomes a valid services.<name> entry under the real config schema',
    (id) => {
      const preset = getPreset(id);
      if (preset === undefined) throw new Error('missing');
      const entry = renderPresetService(preset, {
        credential: `${id}-cred`,
        vars: exampleVars(id),
      });
      const config = parseConfig({ version: 1, services: { svc: entry } }, { baseDir: '/srv' });
      const svc = config.services.svc;
      expect(svc?.auth.type).toBe(preset.auth.type);
      expect(svc?.auth.credential).toBe(`${id}-cred`);
      expect(svc?.upstream.startsWith('https://')).toBe(true);
      for (const h of preset.removeHeaders) expect(svc?.scrub.remove_headers).toContain(h);
      // Every placeholder is declared with an example, and none survives rendering (`env`
      // holds the run-time templates {base_url} and {dummy_key} that `nexus run` fills).
      for (const v of presetVariables(preset)) expect(preset.variables?.[v]?.example).toBeTruthy();
      expect(JSON.stringify({ ...entry, env: undefined })).not.toMatch(/(?<!\{)\{[a-z_]+\}(?!\})/);
      // Issue 11: the forward proxy routes the provider's own host to the service.
      expect(svc?.hosts).toEqual([new URL(svc?.upstream ?? '').hostname]);
      expect(preset.docs).toMatch(/^https:\/\//);
      expect(preset.fields.length).toBeGreaterThan(0);
      expect(preset.id).toMatch(/^[a-z0-9][a-z0-9-]{0,62}$/);
    },
  );

  it('the JSON form lists mechanic, options, fields, scrub rules and docs', () => {
    const gh = presetToJson(getPreset('github-app')!);
    expect(gh).toMatchObject({
      id: 'github-app',
      mechanic: 'github_app',
      options: { installation_id: '{installation_id}' },
      credential_fields: [
        { name: 'app_id', optional: false },
        { name: 'private_key', optional: false },
      ],
      remove_headers: ['x-oauth-scopes', 'x-accepted-oauth-scopes'],
      variables: { installation_id: { example: '12345678' } },
    });
    expect(JSON.parse(JSON.stringify(PRESETS.map(presetToJson)))).toHaveLength(PRESETS.length);
  });

  it('a missing variable is validation_failed; --upstream makes upstream-only variables optional', () => {
    const zendesk = getPreset('zendesk')!;
    expect(codeOf(() => renderPresetService(zendesk, { credential: 'z' }))).toBe(
      'validation_failed',
    );
    expect(
      renderPresetService(zendesk, { credential: 'z', upstream: 'http://127.0.0.1:1' }).upstream,
    ).toBe('http://127.0.0.1:1');
    const graph = getPreset('microsoft-graph')!;
    expect(
      codeOf(() => renderPresetService(graph, { credential: 'g', upstream: 'https://x.test' })),
    ).toBe('validation_failed');
    const aws = renderPresetService(getPreset('aws')!, {
      credential: 'a',
      vars: { service: 'sqs' },
    });
    expect(aws).toMatchObject({
      upstream: 'https://sqs.us-east-1.amazonaws.com',
      auth: { region: 'us-east-1', service: 'sqs' },
    });
  });

  it('docs/mechanics/presets.md holds the table generated from the data', () => {
    const doc = readFileSync(join(REPO, 'docs/mechanics/presets.md'), 'utf8');
    expect(doc).toContain(renderPresetTable());
  });
});

describe('adding a preset service to nexus.yaml', () => {
  const entry = renderPresetService(getPreset('github')!, { credential: 'gh' });

  it('splices the entry into the init example and keeps every other byte', () => {
    const text = renderExampleConfig();
    const out = addServiceToConfigText(text, 'gh', entry);
    const added = out.length - text.length;
    expect(added).toBeGreaterThan(0);
    // Only insertions: removing the new block gives the original back.
    const block = out.slice(out.indexOf('  gh:\n'), out.indexOf('  gh:\n') + added);
    expect(out.replace(block, '')).toBe(text);
    const config = parseConfigText(out, { baseDir: '/srv', env: {} });
    expect(config.services.gh?.auth).toMatchObject({ type: 'bearer', credential: 'gh' });
    // The section comment after services stays where it was, before agents.
    expect(out.indexOf('# Agents and their roles')).toBeGreaterThan(out.indexOf('  gh:'));
  });

  it('works with services: {} and without services, keeping comments', () => {
    const flow = '# top comment\nversion: 1\nservices: {}\nagents: {} # none yet\n';
    const out = addServiceToConfigText(flow, 'gh', entry);
    expect(parseDocument(out).toJS().services.gh).toEqual(entry);
    expect(out).toContain('# top comment');
    expect(out).toContain('# none yet');
    const none = addServiceToConfigText('version: 1\n', 'gh', entry);
    expect(parseDocument(none).toJS()).toEqual({ version: 1, services: { gh: entry } });
  });

  it('refuses an existing service (conflict) and a non-mapping file', () => {
    const once = addServiceToConfigText('version: 1\n', 'gh', entry);
    expect(codeOf(() => addServiceToConfigText(once, 'gh', entry))).toBe('conflict');
    expect(codeOf(() => addServiceToConfigText('- a\n- b\n', 'gh', entry))).toBe(
      'validation_failed',
    );
    expect(codeOf(() => addServiceToConfigText('services: [1]\n', 'gh', entry))).toBe(
      'validation_failed',
    );
  });
});
