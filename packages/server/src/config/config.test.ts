// Config loading: every problem reported with its path at once, unknown keys rejected,
// the plain-http rule, units, freezing, and the `nexus init` example parsing.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { credentialRef, registerMechanicSchema } from './auth-schemas.js';
import { ConfigError } from './errors.js';
import { renderExampleConfig } from './example.js';
import { MECHANICS } from '../mechanics/index.js';
import { loadConfig, parseConfig, parseConfigText } from './load.js';
import { formatDuration, parseDuration, parseListen, parseSize } from './units.js';

const base = {
  version: 1,
  services: {
    github: {
      upstream: 'https://api.github.com',
      auth: { type: 'bearer', credential: 'github-token' },
    },
  },
  agents: { 'triage-bot': { roles: ['triage'] } },
  policies: [
    {
      id: 'triage-reads-issues',
      allow: {
        roles: ['triage'],
        services: ['github'],
        methods: ['GET'],
        paths: ['/repos/*/*/issues/**'],
      },
    },
  ],
};

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    parseConfig(input, { baseDir: '/srv/nexus' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('config_invalid');
    return [...(err as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

function paths(input: unknown): string[] {
  return issuesOf(input).map((i) => i.path);
}

function withService(svc: Record<string, unknown>): unknown {
  return { version: 1, services: { s: svc } };
}

describe('parseConfig', () => {
  it('applies every default', () => {
    const c = parseConfig({ version: 1 }, { baseDir: '/srv/nexus' });
    expect(c.authority).toEqual({
      issuer: 'http://127.0.0.1:7070',
      trust_domain: 'nexus.local',
      lease_ttl: 900_000,
      lease_max_lifetime: 86_400_000,
      enrollment_ttl: 600_000,
      signing_alg: 'EdDSA',
      key_rotation: 30 * 86_400_000,
      clock_skew: 30_000,
    });
    expect(c.proxy).toEqual({
      listen: { host: '127.0.0.1', port: 7070 },
      public_url: 'http://127.0.0.1:7070',
      max_body: 10 * 1024 * 1024,
      max_header_size: 16 * 1024,
      signature_skew: 5000,
      timeouts: { connect: 5000, headers: 30_000, body: 300_000 },
      replay_cache_size: 1_000_000,
    });
    expect(c.admin.listen).toEqual({ host: '127.0.0.1', port: 7071 });
    expect(c.admin.metrics).toEqual({ enabled: true, auth: 'token' });
    expect(c.store).toEqual({ driver: 'sqlite', path: '/srv/nexus/.nexus/nexus.db' });
    expect(c.master_key_file).toBe('/srv/nexus/.nexus/master.key');
    expect(c.master_key).toEqual({ source: 'file', path: '/srv/nexus/.nexus/master.key' });
    expect(c.log.level).toBe('info');
    expect(c.audit).toEqual({ checkpoint_every: 1000, checkpoint_interval: 60_000 });
    expect(c.scrub.remove_headers).toContain('set-cookie');
    expect(c.scrub.min_secret_length).toBe(8);
    expect(c.services).toEqual({});
    expect(c.agents).toEqual({});
    expect(c.policies).toEqual([]);
  });

  it('parses the design example and normalises it', () => {
    const c = parseConfig(base, { baseDir: '/srv/nexus' });
    expect(c.services.github).toMatchObject({
      name: 'github',
      upstream: 'https://api.github.com',
      allow_insecure_upstream: false,
      auth: { type: 'bearer', credential: 'github-token', field: 'value' },
    });
    expect(c.agents['triage-bot']).toEqual({ name: 'triage-bot', roles: ['triage'] });
    expect(c.policies[0]).toEqual({
      id: 'triage-reads-issues',
      effect: 'allow',
      match: {
        roles: ['triage'],
        services: ['github'],
        methods: ['GET'],
        paths: ['/repos/*/*/issues/**'],
      },
    });
  });

  it('derives public_url from listen and issuer from public_url', () => {
    const c = parseConfig({
      version: 1,
      proxy: { listen: '[::1]:9000' },
      admin: { listen: '[::1]:9001' },
    });
    expect(c.proxy.public_url).toBe('http://[::1]:9000');
    expect(c.authority.issuer).toBe('http://[::1]:9000');
    const d = parseConfig({ version: 1, proxy: { public_url: 'https://nexus.example.com/' } });
    expect(d.proxy.public_url).toBe('https://nexus.example.com');
    expect(d.authority.issuer).toBe('https://nexus.example.com');
  });

  it('resolves store and key paths against baseDir', () => {
    expect(parseConfig({ version: 1, store: 'sqlite::memory:' }).store).toEqual({
      driver: 'sqlite',
      path: ':memory:',
    });
    expect(parseConfig({ version: 1, store: 'sqlite:/var/lib/n.db' }).store).toEqual({
      driver: 'sqlite',
      path: '/var/lib/n.db',
    });
    expect(parseConfig({ version: 1, store: 'postgres://nexus@db/nexus' }).store).toEqual({
      driver: 'postgres',
      url: 'postgres://nexus@db/nexus',
    });
    expect(
      parseConfig({ version: 1, master_key_file: 'k/m.key' }, { baseDir: '/a' }).master_key_file,
    ).toBe('/a/k/m.key');
  });

  it('takes the master key from env, redacted', () => {
    const c = parseConfig({ version: 1 }, { env: { NEXUS_MASTER_KEY: 'super-secret-key' } });
    expect(c.master_key.source).toBe('env');
    if (c.master_key.source === 'env') expect(c.master_key.value.reveal()).toBe('super-secret-key');
    expect(JSON.stringify(c)).not.toContain('super-secret-key');
    expect(String(c.master_key.source === 'env' ? c.master_key.value : '')).not.toContain(
      'super-secret-key',
    );
  });

  it('merges service scrub and timeouts with the globals', () => {
    const c = parseConfig({
      version: 1,
      proxy: { timeouts: { connect: '2s' } },
      scrub: { remove_headers: ['Set-Cookie'] },
      services: {
        s: {
          upstream: 'https://x.example/api/',
          auth: { type: 'none' },
          scrub: { remove_headers: ['X-Internal'] },
          timeouts: { headers: '1m' },
        },
      },
    });
    const s = c.services.s;
    expect(s?.upstream).toBe('https://x.example/api');
    expect(s?.scrub.remove_headers).toEqual(['set-cookie', 'x-internal']);
    expect(s?.timeouts).toEqual({ connect: 2000, headers: 60_000, body: 300_000 });
  });

  it('services.<name>.tls.ca_file resolves against baseDir; unknown tls keys are errors', () => {
    const svc = (tls: unknown) => ({
      version: 1,
      services: { s: { upstream: 'https://x.example', auth: { type: 'none' }, tls } },
    });
    const c = parseConfig(svc({ ca_file: 'certs/ca.pem' }), { baseDir: '/srv/nexus' });
    expect(c.services.s?.tls).toEqual({ ca_file: '/srv/nexus/certs/ca.pem' });
    const abs = parseConfig(svc({ ca_file: '/etc/ca.pem' }), { baseDir: '/srv/nexus' });
    expect(abs.services.s?.tls?.ca_file).toBe('/etc/ca.pem');
    expect(parseConfig(svc(undefined)).services.s?.tls).toBeUndefined();
    expect(paths(svc({ ca_file: '' }))).toEqual(['services.s.tls.ca_file']);
    expect(paths(svc({ verify: false }))).toEqual(['services.s.tls.verify']);
  });

  it('returns a deeply frozen object', () => {
    const c = parseConfig(base);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.proxy.timeouts)).toBe(true);
    expect(Object.isFrozen(c.services.github?.auth)).toBe(true);
    expect(Object.isFrozen(c.policies[0]?.match.paths)).toBe(true);
    expect(() => {
      (c.proxy as { max_body: number }).max_body = 1;
    }).toThrow(TypeError);
  });
});

describe('config errors', () => {
  it('reports every problem at once, each with its path', () => {
    const found = paths({
      version: 2,
      bogus: true,
      authority: { lease_ttl: '48h', signing_alg: 'HS256' },
      proxy: { listen: '127.0.0.1:7071', max_body: 'lots', timeouts: { connect: 5 } },
      store: 'mysql://db',
      services: {
        V1: { upstream: 'https://x.example', auth: { type: 'none' } },
        v1: { upstream: 'https://x.example', auth: { type: 'none' } },
        plain: { upstream: 'http://example.com', auth: { type: 'none' } },
        magic: { upstream: 'https://x.example', auth: { type: 'magic' } },
        hdr: {
          upstream: 'https://x.example',
          auth: { type: 'header', credential: 'c', name: 'host', extra: 1 },
        },
      },
      agents: { bot: { roles: ['Bad Role'] } },
      policies: [
        {
          id: 'r1',
          allow: { services: ['nope'], agents: ['ghost'], paths: ['a/*b'], intent: '(' },
          deny: {},
        },
        { id: 'r1' },
      ],
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'version',
        'bogus',
        'authority.signing_alg',
        'authority.lease_ttl',
        'proxy.max_body',
        'proxy.timeouts.connect',
        'store',
        'services.V1',
        'services.v1',
        'services.plain.upstream',
        'services.magic.auth.type',
        'services.hdr.auth.name',
        'services.hdr.auth.extra',
        'agents.bot.roles[0]',
        'policies[0].allow.services[0]',
        'policies[0].allow.agents[0]',
        'policies[0].allow.paths[0]',
        'policies[0].allow.intent',
        'policies[0].deny',
        'policies[1]',
        'policies[1].id',
        'admin.listen',
      ]),
    );
  });

  it.each([
    ['top level', { version: 1, extra: 1 }, 'extra'],
    ['authority', { version: 1, authority: { ttl: '1m' } }, 'authority.ttl'],
    ['proxy.timeouts', { version: 1, proxy: { timeouts: { read: '1s' } } }, 'proxy.timeouts.read'],
    [
      'service',
      withService({ upstream: 'https://x.example', auth: { type: 'none' }, retries: 3 }),
      'services.s.retries',
    ],
    [
      'auth none',
      withService({ upstream: 'https://x.example', auth: { type: 'none', credential: 'c' } }),
      'services.s.auth.credential',
    ],
    ['agent', { version: 1, agents: { a: { roles: [], admin: true } } }, 'agents.a.admin'],
    [
      'rule',
      { version: 1, policies: [{ id: 'r', allow: {}, priority: 1 }] },
      'policies[0].priority',
    ],
    [
      'matcher',
      { version: 1, policies: [{ id: 'r', allow: { hosts: ['x'] } }] },
      'policies[0].allow.hosts',
    ],
    [
      'time',
      { version: 1, policies: [{ id: 'r', allow: { time: { week: 1 } } }] },
      'policies[0].allow.time.week',
    ],
  ])('rejects an unknown key in %s', (_name, input, path) => {
    const issues = issuesOf(input);
    expect(issues).toContainEqual({ path, message: expect.any(String) as string });
  });

  it.each([
    ['http to a public host', 'http://example.com', undefined, false],
    ['http to a private address', 'http://10.0.0.1:8080', undefined, false],
    ['http to 127.0.0.1', 'http://127.0.0.1:8080', undefined, true],
    ['http to 127.1.2.3', 'http://127.1.2.3', undefined, true],
    ['http to localhost', 'http://localhost:3000/api', undefined, true],
    ['http to [::1]', 'http://[::1]:8080', undefined, true],
    ['http with the opt-in', 'http://example.com', true, true],
    ['https', 'https://api.github.com', undefined, true],
    ['ftp', 'ftp://example.com', true, false],
    ['user info', 'https://user:pw@example.com', undefined, false],
    ['a query', 'https://example.com/?a=1', undefined, false],
    ['not a URL', 'api.github.com', undefined, false],
  ])('upstream: %s', (_name, upstream, optIn, ok) => {
    const svc = {
      upstream,
      auth: { type: 'none' },
      ...(optIn === undefined ? {} : { allow_insecure_upstream: optIn }),
    };
    if (ok) expect(() => parseConfig(withService(svc))).not.toThrow();
    else expect(paths(withService(svc))).toEqual(['services.s.upstream']);
  });

  it.each([
    ['lease_ttl over max', { authority: { lease_ttl: '2d' } }, 'authority.lease_ttl'],
    [
      'same listeners',
      { proxy: { listen: '127.0.0.1:8000' }, admin: { listen: '127.0.0.1:8000' } },
      'admin.listen',
    ],
    ['wildcard listener clash', { proxy: { listen: '0.0.0.0:7071' } }, 'admin.listen'],
    ['bad listen', { proxy: { listen: 'localhost' } }, 'proxy.listen'],
    ['port out of range', { admin: { listen: '127.0.0.1:70000' } }, 'admin.listen'],
    ['bare number duration', { authority: { clock_skew: 30 } }, 'authority.clock_skew'],
    ['zero ttl', { authority: { lease_ttl: '0s' } }, 'authority.lease_ttl'],
    ['bad size', { proxy: { max_header_size: '16kb' } }, 'proxy.max_header_size'],
    ['postgres password', { store: 'postgres://u:secret@db/n' }, 'store'],
    ['empty sqlite path', { store: 'sqlite:' }, 'store'],
    ['log level', { log: { level: 'trace' } }, 'log.level'],
    [
      'reserved service name',
      { services: { v1: { upstream: 'https://x.example', auth: { type: 'none' } } } },
      'services.v1',
    ],
    [
      'long service name',
      { services: { ['a'.repeat(64)]: { upstream: 'https://x.example', auth: { type: 'none' } } } },
      `services.${'a'.repeat(64)}`,
    ],
    ['missing auth', { services: { s: { upstream: 'https://x.example' } } }, 'services.s.auth'],
    [
      'bearer without credential',
      { services: { s: { upstream: 'https://x.example', auth: { type: 'bearer' } } } },
      'services.s.auth.credential',
    ],
    [
      'header template without field',
      {
        services: {
          s: {
            upstream: 'https://x.example',
            auth: { type: 'header', credential: 'c', name: 'x-key', template: 'static' },
          },
        },
      },
      'services.s.auth.template',
    ],
    [
      'query without param',
      {
        services: {
          s: { upstream: 'https://x.example', auth: { type: 'query', credential: 'c' } },
        },
      },
      'services.s.auth.param',
    ],
    [
      'duplicate rule ids',
      {
        policies: [
          { id: 'a', deny: {} },
          { id: 'a', deny: {} },
        ],
      },
      'policies[1].id',
    ],
    ['allow and deny', { policies: [{ id: 'a', allow: {}, deny: {} }] }, 'policies[0].deny'],
    ['neither allow nor deny', { policies: [{ id: 'a' }] }, 'policies[0]'],
    [
      'bad method',
      { policies: [{ id: 'a', allow: { methods: ['GE T'] } }] },
      'policies[0].allow.methods[0]',
    ],
    [
      'bad time zone',
      { policies: [{ id: 'a', allow: { time: { tz: 'Mars/Olympus' } } }] },
      'policies[0].allow.time.tz',
    ],
    [
      'empty window',
      { policies: [{ id: 'a', allow: { time: { from: '09:00', to: '09:00' } } }] },
      'policies[0].allow.time.to',
    ],
    [
      'bad day',
      { policies: [{ id: 'a', allow: { time: { days: ['funday'] } } }] },
      'policies[0].allow.time.days[0]',
    ],
  ])('rejects %s', (_name, extra, path) => {
    expect(paths({ version: 1, ...extra })).toEqual([path]);
  });

  it('rejects an empty or non-mapping document', () => {
    expect(paths(null)).toEqual(['']);
    expect(paths([1, 2])).toEqual(['']);
  });
});

describe('auth mechanic registry', () => {
  it('validates a later-registered mechanic without touching the loader', () => {
    registerMechanicSchema(
      'test-hmac',
      z.strictObject({ credential: credentialRef, header: z.string().default('x-signature') }),
    );
    const ok = parseConfig(
      withService({ upstream: 'https://x.example', auth: { type: 'test-hmac', credential: 'k' } }),
    );
    expect(ok.services.s?.auth).toEqual({
      type: 'test-hmac',
      credential: 'k',
      header: 'x-signature',
    });
    expect(
      paths(
        withService({
          upstream: 'https://x.example',
          auth: { type: 'test-hmac', credential: 'k', extra: 1 },
        }),
      ),
    ).toEqual(['services.s.auth.extra']);
  });

  it('applies built-in defaults', () => {
    const auth = (a: Record<string, unknown>): unknown =>
      parseConfig(withService({ upstream: 'https://x.example', auth: a })).services.s?.auth;
    expect(auth({ type: 'header', credential: 'c', name: 'X-Api-Key' })).toEqual({
      type: 'header',
      credential: 'c',
      name: 'x-api-key',
      template: '{{value}}',
    });
    expect(auth({ type: 'basic', credential: 'c' })).toEqual({
      type: 'basic',
      credential: 'c',
      username_field: 'username',
      password_field: 'password',
    });
    expect(auth({ type: 'query', credential: 'c', param: 'api_key' })).toEqual({
      type: 'query',
      credential: 'c',
      param: 'api_key',
      field: 'value',
    });
  });
});

describe('YAML loading', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nexus-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file and resolves paths against its directory', async () => {
    const file = join(dir, 'nexus.yaml');
    await writeFile(file, 'version: 1\nstore: sqlite:data/n.db\n');
    const c = await loadConfig(file, { env: {} });
    expect(c.store).toEqual({ driver: 'sqlite', path: join(dir, 'data/n.db') });
    expect(c.base_dir).toBe(dir);
  });

  it('reports YAML syntax errors with a line', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'version: 1\nproxy:\n  listen: [1\nadmin: 2\n');
    const err = await loadConfig(file, { env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('config_invalid');
    expect((err as ConfigError).issues[0]?.line).toBeGreaterThan(1);
  });

  it('rejects duplicate keys', () => {
    expect(() => parseConfigText('version: 1\nversion: 1\n')).toThrow(ConfigError);
  });

  it('reports a missing file as config_invalid', async () => {
    const err = await loadConfig(join(dir, 'missing.yaml'), { env: {} }).catch((e: unknown) => e);
    expect((err as ConfigError).code).toBe('config_invalid');
  });

  it('gives schema issues the line of the offending key', () => {
    try {
      parseConfigText('version: 1\nproxy:\n  listen: 127.0.0.1:7070\n  max_bdy: 1\n', {
        file: 'nexus.yaml',
      });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).issues).toEqual([
        { path: 'proxy.max_bdy', message: 'unknown key', line: 4, column: 12 },
      ]);
      expect((err as ConfigError).message.split('\n')[1]).toMatch(
        /^nexus\.yaml:4: proxy\.max_bdy: /,
      );
    }
  });

  it("lists every built-in mechanic in the example's auth.type comment", () => {
    const text = renderExampleConfig();
    const block = /^# auth\.type[^\n]*\n(# {3}[^\n]*\n)*/m.exec(text)?.[0] ?? '';
    const listed = block
      .replace(/^# auth\.type \([^)]*\):/, '')
      .replace(/Or start from a preset.*$/s, '')
      .split(/[|#.\s]+/)
      .filter((w) => w !== '');
    expect(listed.sort()).toEqual([...MECHANICS.keys()].sort());
  });

  it('renders an example config that parses with the schema', () => {
    const c = parseConfigText(renderExampleConfig(), { baseDir: dir });
    expect(c.services.echo).toMatchObject({
      upstream: 'http://127.0.0.1:8080',
      auth: { type: 'bearer', credential: 'echo-token' },
    });
    expect(Object.keys(c.agents)).toHaveLength(1);
    expect(c.policies).toHaveLength(1);
    expect(c.policies[0]?.effect).toBe('allow');
    const custom = parseConfigText(
      renderExampleConfig({
        agent: 'triage-bot',
        serviceName: 'api',
        proxyListen: '127.0.0.1:9090',
        adminListen: '127.0.0.1:9091',
      }),
    );
    expect(custom.agents['triage-bot']).toBeDefined();
    expect(custom.proxy.listen.port).toBe(9090);
  });
});

describe('units', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['0s', 0],
  ])('duration %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '15', '1.5h', '15 minutes', '-1s', 'm', '1w', '1H'])(
    'not a duration: %j',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );

  it('formats durations', () => {
    expect(formatDuration(900_000)).toBe('15m');
    expect(formatDuration(1500)).toBe('1500ms');
  });

  it.each([
    ['10MiB', 10_485_760],
    ['16KiB', 16_384],
    ['1GiB', 1024 ** 3],
    ['2MB', 2_000_000],
    ['100B', 100],
    ['4096', 4096],
    [1234, 1234],
  ] as const)('size %j', (v, bytes) => {
    expect(parseSize(v)).toBe(bytes);
  });

  it.each(['10mib', '1.5MiB', '-1', 'big', 1.5, -1])('not a size: %j', (v) => {
    expect(parseSize(v)).toBeUndefined();
  });

  it.each([
    ['127.0.0.1:7070', { host: '127.0.0.1', port: 7070 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:7070', { host: '::1', port: 7070 }],
    ['7070', undefined],
    [':7070', undefined],
    ['host:99999', undefined],
    ['::1:7070', undefined],
  ])('listen %s', (text, addr) => {
    expect(parseListen(text)).toEqual(addr);
  });
});
