// Issue 11: a service's `env` and `hosts` as nexus.yaml declares them, and which services
// an agent is told about.
import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../policy/compile.js';
import { ConfigError } from './errors.js';
import { parseConfig } from './load.js';
import { reachableServices } from './reach.js';

const svc = (extra: Record<string, unknown>) => ({
  upstream: 'https://api.example.test/base/',
  auth: { type: 'bearer', credential: 'c' },
  ...extra,
});

function paths(services: Record<string, unknown>): string[] {
  try {
    parseConfig({ version: 1, services }, { baseDir: '/srv' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

describe('services.<name>.env and hosts (issue 11)', () => {
  it('accepts the two templates and DNS host names (lower-cased, deduplicated)', () => {
    const config = parseConfig(
      {
        version: 1,
        services: {
          a: svc({
            env: { A_BASE_URL: '{base_url}/v1', A_API_KEY: '{dummy_key}', A_URL: '{base_url}' },
            hosts: ['API.Example.test', 'api.example.test'],
          }),
        },
      },
      { baseDir: '/srv' },
    );
    expect(config.services.a?.env).toEqual({
      A_BASE_URL: '{base_url}/v1',
      A_API_KEY: '{dummy_key}',
      A_URL: '{base_url}',
    });
    expect(config.services.a?.hosts).toEqual(['api.example.test']);
  });

  it.each([
    [{ env: { LD_PRELOAD: '{base_url}' } }, 'reserved'],
    [{ env: { NODE_OPTIONS: '{dummy_key}' } }, 'reserved'],
    [{ env: { HTTPS_PROXY: '{base_url}' } }, 'reserved'],
    [{ env: { NEXUS_PROXY: '{base_url}' } }, 'reserved'],
    [{ env: { SSL_CERT_FILE: '{base_url}' } }, 'reserved'],
    [{ env: { lower: '{base_url}' } }, 'upper-case'],
    [{ env: { A_KEY: 'sk-literal-value' } }, '{dummy_key}'],
    [{ env: { A_URL: 'http://evil.test' } }, '{dummy_key}'],
    [{ env: { A_URL: '{base_url}/v1 ; rm' } }, '{dummy_key}'],
    [{ hosts: ['*.example.test'] }, 'DNS host name'],
    [{ hosts: ['api.example.test:443'] }, 'DNS host name'],
    [{ hosts: ['127.0.0.1:1'] }, 'DNS host name'],
  ])('refuses %j', (extra, message) => {
    const issues = paths({ a: svc(extra) });
    expect(issues.join('\n')).toContain(message);
  });

  it('a host is owned by one service at most', () => {
    const issues = paths({
      a: svc({ hosts: ['api.example.test'] }),
      b: svc({ hosts: ['API.example.test'] }),
    });
    expect(issues).toEqual([
      'services.b.hosts: host api.example.test is already owned by service a',
    ]);
  });

  it('an agent is told only of services an allow rule could open to it', () => {
    const config = parseConfig(
      {
        version: 1,
        services: {
          byrole: svc({ hosts: ['a.test'] }),
          byname: svc({}),
          denied: svc({}),
          other: svc({}),
        },
        agents: { bot: { roles: ['dev'] }, else: { roles: ['ops'] } },
        policies: [
          { id: 'r', allow: { roles: ['dev'], services: ['byrole'], methods: ['GET'] } },
          { id: 'n', allow: { agents: ['bot'], services: ['byname'] } },
          { id: 'd', deny: { roles: ['dev'], services: ['denied'] } },
          { id: 'o', allow: { roles: ['ops'], services: ['other'] } },
        ],
      },
      { baseDir: '/srv' },
    );
    const policy = compilePolicy(config);
    const list = reachableServices(config.services, (s) => policy.rulesFor(s), 'bot', ['dev']);
    expect(list).toEqual([
      { name: 'byname', env: {}, hosts: [], path_prefix: '/base' },
      { name: 'byrole', env: {}, hosts: ['a.test'], path_prefix: '/base' },
    ]);
  });
});
