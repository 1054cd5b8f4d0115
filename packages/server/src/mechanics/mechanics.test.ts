/**
 * Table-driven unit tests for the simple mechanics (none, header, bearer, basic, query) over
 * the real `Mechanic` interface, and the secrets property for every registered mechanic:
 * each credential field value a mechanic reads appears in `AppliedAuth.secrets`.
 */
import { isNexusError } from '@nexus-proxy/protocol';
import { describe, expect, it } from 'vitest';
import { MECHANICS, registerMechanicSchemas } from './index.js';
import type { OutboundRequest, ResolvedCredential } from './mechanic.js';
import { replaceQueryParam } from './query.js';
import { fakeContext, outbound } from './test/fake-context.js';

const cred = (fields: Record<string, string>, name = 'cred'): ResolvedCredential => ({
  name,
  version: 2,
  fields,
});

function build(type: string, options: Record<string, unknown>) {
  const def = MECHANICS.get(type);
  if (def === undefined) throw new Error(`no mechanic ${type}`);
  return def.create('svc', def.optionsSchema.parse(options), { clock: () => 0 });
}

interface Case {
  name: string;
  type: string;
  options: Record<string, unknown>;
  fields: Record<string, string>;
  url?: string;
  headers?: Record<string, string>;
  expectHeaders?: Record<string, string>;
  expectSearch?: string;
  injectedHeaders: string[];
  injectedQueryParams?: string[];
  secrets: string[];
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const CASES: Case[] = [
  {
    name: 'none injects nothing',
    type: 'none',
    options: {},
    fields: {},
    headers: { accept: 'application/json' },
    expectHeaders: { accept: 'application/json' },
    injectedHeaders: [],
    secrets: [],
  },
  {
    name: 'header with the default template',
    type: 'header',
    options: { credential: 'cred', name: 'X-Api-Key' },
    fields: { value: 'k-123' },
    expectHeaders: { 'x-api-key': 'k-123' },
    injectedHeaders: ['x-api-key'],
    secrets: ['k-123'],
  },
  {
    name: 'header with a prefix template',
    type: 'header',
    options: { credential: 'cred', name: 'authorization', template: 'token {{value}}' },
    fields: { value: 'ghp_abc' },
    expectHeaders: { authorization: 'token ghp_abc' },
    injectedHeaders: ['authorization'],
    secrets: ['ghp_abc', 'token ghp_abc'],
  },
  {
    name: 'header with two fields',
    type: 'header',
    options: { credential: 'cred', name: 'x-auth', template: '{{key_id}}:{{secret}}' },
    fields: { key_id: 'id1', secret: 'sec1', unused: 'zzz' },
    expectHeaders: { 'x-auth': 'id1:sec1' },
    injectedHeaders: ['x-auth'],
    secrets: ['id1', 'sec1', 'id1:sec1'],
  },
  {
    name: 'header replaces an agent copy',
    type: 'header',
    options: { credential: 'cred', name: 'x-api-key' },
    fields: { value: 'real' },
    headers: { 'x-api-key': 'agent-fake' },
    expectHeaders: { 'x-api-key': 'real' },
    injectedHeaders: ['x-api-key'],
    secrets: ['real'],
  },
  {
    name: 'bearer from value',
    type: 'bearer',
    options: { credential: 'cred' },
    fields: { value: 'tok' },
    headers: { authorization: 'Bearer agent' },
    expectHeaders: { authorization: 'Bearer tok' },
    injectedHeaders: ['authorization'],
    secrets: ['tok'],
  },
  {
    name: 'bearer from a named field',
    type: 'bearer',
    options: { credential: 'cred', field: 'access_token' },
    fields: { access_token: 'at', value: 'other' },
    expectHeaders: { authorization: 'Bearer at' },
    injectedHeaders: ['authorization'],
    secrets: ['at'],
  },
  {
    name: 'basic (RFC 7617 example)',
    type: 'basic',
    options: { credential: 'cred' },
    fields: { username: 'Aladdin', password: 'open sesame' },
    expectHeaders: { authorization: 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==' },
    injectedHeaders: ['authorization'],
    secrets: ['Aladdin', 'open sesame', 'Aladdin:open sesame', 'QWxhZGRpbjpvcGVuIHNlc2FtZQ=='],
  },
  {
    name: 'basic with custom fields, UTF-8 and an empty password',
    type: 'basic',
    options: { credential: 'cred', username_field: 'key', password_field: 'pw' },
    fields: { key: 'sk_tést', pw: '' },
    expectHeaders: { authorization: `Basic ${b64('sk_tést:')}` },
    injectedHeaders: ['authorization'],
    secrets: ['sk_tést', 'sk_tést:', b64('sk_tést:')],
  },
  {
    name: 'query appends the parameter',
    type: 'query',
    options: { credential: 'cred', param: 'api_key' },
    fields: { value: 'q/1 +' },
    url: 'https://api.example/v1/x?a=1&b=%20two',
    expectSearch: '?a=1&b=%20two&api_key=q%2F1%20%2B',
    injectedHeaders: [],
    injectedQueryParams: ['api_key'],
    secrets: ['q/1 +', 'q%2F1%20%2B'],
  },
  {
    name: 'query replaces every agent copy (also encoded names)',
    type: 'query',
    options: { credential: 'cred', param: 'key', field: 'k' },
    fields: { k: 'real' },
    url: 'https://api.example/v1/x?key=fake&x=1&k%65y=fake2&key',
    expectSearch: '?x=1&key=real',
    injectedHeaders: [],
    injectedQueryParams: ['key'],
    secrets: ['real'],
  },
];

describe('simple mechanics', () => {
  it.each(CASES)('$name', async (c) => {
    const mechanic = build(c.type, c.options);
    expect(mechanic.type).toBe(c.type);
    expect(mechanic.injectedHeaders).toEqual(c.injectedHeaders);
    expect(mechanic.injectedQueryParams).toEqual(c.injectedQueryParams ?? []);
    const req = outbound('GET', c.url ?? 'https://api.example/v1/x', { headers: c.headers });
    const ctx = fakeContext(cred(c.fields));
    const result = await mechanic.apply(req, ctx);
    if (c.expectHeaders) expect(req.headers).toEqual(c.expectHeaders);
    if (c.expectSearch !== undefined) expect(req.url.search).toBe(c.expectSearch);
    expect([...result.secrets].sort()).toEqual([...c.secrets].sort());
    if (c.type === 'none') {
      expect(result.credential).toBeUndefined();
      expect(ctx.requested).toEqual([]);
    } else {
      expect(result.credential).toEqual({ name: 'cred', version: 2 });
      expect(ctx.requested).toEqual(['cred']);
    }
  });
});

describe('credential failures', () => {
  const FAILS: Array<[string, string, Record<string, unknown>, Record<string, string>]> = [
    [
      'header: template field missing',
      'header',
      { credential: 'cred', name: 'x-a', template: '{{a}}-{{b}}' },
      { a: '1' },
    ],
    [
      'header: value with CRLF',
      'header',
      { credential: 'cred', name: 'x-a' },
      { value: 'v\r\nx-evil: 1' },
    ],
    ['bearer: field missing', 'bearer', { credential: 'cred' }, { token: 't' }],
    ['bearer: field empty', 'bearer', { credential: 'cred' }, { value: '' }],
    ['basic: username missing', 'basic', { credential: 'cred' }, { password: 'p' }],
    ['basic: password missing', 'basic', { credential: 'cred' }, { username: 'u' }],
    [
      'basic: colon in username',
      'basic',
      { credential: 'cred' },
      { username: 'a:b', password: 'p' },
    ],
    ['query: field missing', 'query', { credential: 'cred', param: 'k' }, {}],
  ];
  it.each(FAILS)('%s -> credential_unavailable', async (_name, type, options, fields) => {
    const req = outbound('GET', 'https://api.example/');
    const err = await build(type, options)
      .apply(req, fakeContext(cred(fields)))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isNexusError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'credential_unavailable', status: 503 });
    // The message never carries a credential value.
    for (const value of Object.values(fields)) {
      if (value.length > 1) expect(String((err as Error).message)).not.toContain(value);
    }
  });

  it('vault failure propagates', async () => {
    await expect(
      build('bearer', { credential: 'cred' }).apply(
        outbound('GET', 'https://api.example/'),
        fakeContext(undefined),
      ),
    ).rejects.toMatchObject({ code: 'credential_unavailable' });
  });
});

describe('option schemas', () => {
  const BAD: Array<[string, string, Record<string, unknown>]> = [
    ['none: extra key', 'none', { credential: 'x' }],
    ['header: no name', 'header', { credential: 'c' }],
    ['header: forbidden name', 'header', { credential: 'c', name: 'Content-Length' }],
    [
      'header: template without a field',
      'header',
      { credential: 'c', name: 'x', template: 'static' },
    ],
    ['header: unknown key', 'header', { credential: 'c', name: 'x', prefix: 'a' }],
    ['bearer: no credential', 'bearer', {}],
    ['bearer: bad field name', 'bearer', { credential: 'c', field: 'a b' }],
    ['basic: unknown key', 'basic', { credential: 'c', user: 'u' }],
    ['query: bad param', 'query', { credential: 'c', param: 'a&b' }],
    ['query: no param', 'query', { credential: 'c' }],
  ];
  it.each(BAD)('rejects %s', (_name, type, options) => {
    expect(MECHANICS.get(type)?.optionsSchema.safeParse(options).success).toBe(false);
  });

  it('applies defaults', () => {
    expect(MECHANICS.get('bearer')?.optionsSchema.parse({ credential: 'c' })).toEqual({
      credential: 'c',
      field: 'value',
    });
    expect(MECHANICS.get('basic')?.optionsSchema.parse({ credential: 'c' })).toEqual({
      credential: 'c',
      username_field: 'username',
      password_field: 'password',
    });
    expect(MECHANICS.get('header')?.optionsSchema.parse({ credential: 'c', name: 'X-K' })).toEqual({
      credential: 'c',
      name: 'x-k',
      template: '{{value}}',
    });
  });
});

describe('replaceQueryParam', () => {
  it.each([
    ['', 'k', 'v', 'k=v'],
    ['a=1', 'k', 'v', 'a=1&k=v'],
    ['k=1&k=2', 'k', 'v', 'k=v'],
    ['a=1&&b', 'k', 'v', 'a=1&b&k=v'],
    ['k+=1', 'k', 'v', 'k+=1&k=v'],
  ])('%j', (search, param, value, expected) => {
    expect(replaceQueryParam(search, param, value)).toBe(expected);
  });
});

/** Records which credential fields a mechanic reads. */
function watched(fields: Record<string, string>): { cred: ResolvedCredential; read: Set<string> } {
  const read = new Set<string>();
  const proxy = new Proxy(fields, {
    get(target, key, receiver) {
      if (typeof key === 'string' && Object.hasOwn(target, key)) read.add(key);
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { cred: { name: 'cred', version: 1, fields: proxy }, read };
}

describe('property: every credential value that travels upstream is a secret, and only those (issue 10)', () => {
  const ALL: Array<[string, Record<string, unknown>, Record<string, string>]> = [
    [
      'header',
      { credential: 'cred', name: 'x-a', template: '{{a}} {{b}}' },
      { a: 'AAA', b: 'BBB', c: 'CCC' },
    ],
    ['bearer', { credential: 'cred' }, { value: 'VVV' }],
    ['basic', { credential: 'cred' }, { username: 'UUU', password: 'PPP' }],
    ['query', { credential: 'cred', param: 'p' }, { value: 'QQQ' }],
    [
      'aws_sigv4',
      { credential: 'cred', region: 'us-east-1', service: 'sts' },
      { access_key_id: 'AKID', secret_access_key: 'SAK', session_token: 'TOK' },
    ],
    ['hmac', { credential: 'cred', preset: 'stripe-webhook' }, { secret: 'SSS' }],
    [
      'hmac',
      { credential: 'cred', preset: 'coinbase-exchange' },
      { secret: 'c2VjcmV0', key_id: 'KID', passphrase: 'PASS' },
    ],
  ];
  // Fields a mechanic reads but never sends: no upstream can reflect them, so they are in
  // no response matcher (a signing key would otherwise answer agents' probes elsewhere).
  const STAYS_HOME: Record<string, string[]> = {
    aws_sigv4: ['secret_access_key'],
    hmac: ['secret'],
  };

  // These talk to a token endpoint or an upstream over TLS before they can inject
  // anything; the same rule (every field read is a secret) is checked in their own unit
  // tests (jwt-bearer, token-exchange, oauth2-*) and end-to-end tests (mtls).
  const NEEDS_A_SERVER = new Set([
    'oauth2_client_credentials',
    'oauth2_authorization_code',
    'jwt_bearer',
    'github_app',
    'token_exchange',
    'mtls',
  ]);

  it('covers every registered mechanic but none and those that need a server', () => {
    expect(new Set(ALL.map(([t]) => t))).toEqual(
      new Set([...MECHANICS.keys()].filter((t) => t !== 'none' && !NEEDS_A_SERVER.has(t))),
    );
  });

  it.each(ALL)('%s %j', async (type, options, fields) => {
    const { cred: c, read } = watched(fields);
    const req: OutboundRequest = outbound('POST', 'https://api.example/p?x=1', { body: 'b' });
    const result = await build(type, options).apply(req, fakeContext(c));
    expect(read.size).toBeGreaterThan(0);
    const wire = [
      req.url.href,
      ...Object.values(req.headers),
      Buffer.from(req.body ?? []).toString(),
    ]
      .map((v) => `${v} ${Buffer.from(v, 'base64').toString('latin1')}`)
      .join('\n');
    for (const field of read) {
      if (STAYS_HOME[type]?.includes(field)) {
        expect(result.secrets).not.toContain(fields[field]);
        expect(wire).not.toContain(fields[field]);
      } else {
        expect(result.secrets).toContain(fields[field]);
      }
    }
    // And no secret is the empty string.
    expect(result.secrets).not.toContain('');
  });
});

describe('registerMechanicSchemas', () => {
  it('registers every mechanic schema with the config loader', async () => {
    const { getMechanicSchema } = await import('../config/auth-schemas.js');
    const { parseConfig } = await import('../config/load.js');
    registerMechanicSchemas();
    for (const [type, def] of MECHANICS) expect(getMechanicSchema(type)).toBe(def.optionsSchema);
    const config = parseConfig(
      {
        version: 1,
        services: {
          aws: {
            upstream: 'https://sts.us-east-1.amazonaws.com',
            auth: { type: 'aws_sigv4', credential: 'aws', region: 'us-east-1', service: 'sts' },
          },
          hooks: {
            upstream: 'https://receiver.example',
            auth: { type: 'hmac', credential: 'hook', preset: 'stripe-webhook' },
          },
        },
      },
      { baseDir: '/srv/nexus' },
    );
    expect(config.services['aws']?.auth).toMatchObject({ type: 'aws_sigv4', sign_body: true });
    expect(config.services['hooks']?.auth).toMatchObject({
      type: 'hmac',
      signature_header: 'stripe-signature',
    });
  });

  it('passes each schema to a given register function', () => {
    const seen: string[] = [];
    registerMechanicSchemas((type) => seen.push(type));
    expect(seen.sort()).toEqual([...MECHANICS.keys()].sort());
  });
});
