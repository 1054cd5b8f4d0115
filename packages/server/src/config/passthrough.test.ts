// Issue 11: `passthrough:` rules as nexus.yaml declares them, and which tunnels they allow.
import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { parseConfig } from './load.js';
import { hostMatches, passthroughRuleFor } from './passthrough.js';

function issues(passthrough: unknown): string[] {
  try {
    parseConfig({ version: 1, passthrough }, { baseDir: '/srv' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

describe('passthrough rules (issue 11)', () => {
  it('defaults to none, lower-cases hosts and defaults ports to 443', () => {
    expect(parseConfig({ version: 1 }, { baseDir: '/srv' }).passthrough).toEqual([]);
    const config = parseConfig(
      {
        version: 1,
        passthrough: [{ id: 'pypi', hosts: ['PyPI.org', '*.pythonhosted.org'], roles: ['dev'] }],
      },
      { baseDir: '/srv' },
    );
    expect(config.passthrough).toEqual([
      { id: 'pypi', hosts: ['pypi.org', '*.pythonhosted.org'], roles: ['dev'], ports: [443] },
    ]);
  });

  it('refuses a rule for everyone, bad hosts, ports and duplicate ids', () => {
    expect(issues([{ id: 'all', hosts: ['pypi.org'] }])).toEqual([
      'passthrough[0]: a passthrough rule names its agents or roles',
    ]);
    for (const host of ['pypi.org:443', '*', '*.*.org', 'a*.org', 'https://pypi.org', '']) {
      expect(issues([{ id: 'x', hosts: [host], agents: ['bot'] }]), host).toHaveLength(1);
    }
    expect(issues([{ id: 'x', hosts: ['a.org'], agents: ['bot'], ports: [0] }])).toHaveLength(1);
    expect(issues([{ id: 'x', hosts: ['a.org'], agents: ['bot'], extra: 1 }])).toHaveLength(1);
    expect(
      issues([
        { id: 'x', hosts: ['a.org'], agents: ['bot'] },
        { id: 'x', hosts: ['b.org'], agents: ['bot'] },
      ]),
    ).toEqual(['passthrough[1].id: duplicate rule id "x"']);
  });

  it('matches exact names, wildcards below a name only, ports, agents and roles', () => {
    expect(hostMatches('pypi.org', 'pypi.org')).toBe(true);
    expect(hostMatches('pypi.org', 'evilpypi.org')).toBe(false);
    expect(hostMatches('*.pypi.org', 'files.pypi.org')).toBe(true);
    expect(hostMatches('*.pypi.org', 'a.b.pypi.org')).toBe(true);
    expect(hostMatches('*.pypi.org', 'pypi.org')).toBe(false);
    expect(hostMatches('*.pypi.org', 'evilpypi.org')).toBe(false);
    const rules = [
      { id: 'by-role', hosts: ['*.pypi.org'], roles: ['dev'], ports: [443] },
      { id: 'by-agent', hosts: ['docs.example.org'], agents: ['bot'], ports: [443, 8443] },
    ];
    expect(passthroughRuleFor(rules, 'x', ['dev'], 'Files.PyPI.org', 443)?.id).toBe('by-role');
    expect(passthroughRuleFor(rules, 'x', ['dev'], 'files.pypi.org', 80)).toBeUndefined();
    expect(passthroughRuleFor(rules, 'x', ['ops'], 'files.pypi.org', 443)).toBeUndefined();
    expect(passthroughRuleFor(rules, 'bot', [], 'docs.example.org', 8443)?.id).toBe('by-agent');
    expect(passthroughRuleFor(rules, 'bot2', ['dev'], 'docs.example.org', 443)).toBeUndefined();
  });
});
