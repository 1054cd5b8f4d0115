// Issue 11: the pure parts of base-URL and forward-proxy mode (which variables, which
// target), table-driven.
import { describe, expect, it } from 'vitest';
import type { AgentService } from '@nexus-proxy/sdk';
import { serviceTarget } from './forward-proxy.js';
import {
  DUMMY_KEY,
  baseUrlEnvironment,
  forwardProxyEnvironment,
  holdsDummyKey,
  queryWithoutDummyKey,
  selectEnvServices,
} from './reach.js';

const svc = (name: string, env: Record<string, string>, hosts: string[] = []): AgentService => ({
  name,
  env,
  hosts,
  path_prefix: '',
});
const openai = svc('openai', { OPENAI_BASE_URL: '{base_url}/v1', OPENAI_API_KEY: '{dummy_key}' });
const groq = svc('groq', { OPENAI_BASE_URL: '{base_url}/openai/v1' });
const plain = svc('plain', {});

describe('selectEnvServices', () => {
  it('all: every service with env; a clash keeps the first by name and warns', () => {
    const warnings: string[] = [];
    const out = selectEnvServices('all', [groq, openai, plain], (l) => warnings.push(l));
    expect(out.map((s) => s.name)).toEqual(['groq']);
    expect(warnings.join('\n')).toContain('(env_conflict)');
  });
  it('none and the empty string select nothing', () => {
    expect(selectEnvServices('none', [openai], () => undefined)).toEqual([]);
    expect(selectEnvServices(' ', [openai], () => undefined)).toEqual([]);
  });
  it.each([
    ['nope', 'service_unknown'],
    ['plain', 'env_undeclared'],
    ['openai,groq', 'env_conflict'],
  ])('names %s: %s', (spec, code) => {
    expect(() => selectEnvServices(spec, [openai, groq, plain], () => undefined)).toThrow(
      expect.objectContaining({ code }),
    );
  });
});

describe('baseUrlEnvironment', () => {
  it('fills the templates and nothing else', () => {
    const hostile = svc('x', {
      NEXUS_PROXY: '{base_url}',
      lower: '{base_url}',
      X_KEY: 'literal',
      X_URL: '{base_url}/a',
    });
    expect(baseUrlEnvironment([openai, hostile], 'http://127.0.0.1:9')).toEqual({
      OPENAI_BASE_URL: 'http://127.0.0.1:9/openai/v1',
      OPENAI_API_KEY: DUMMY_KEY,
      X_URL: 'http://127.0.0.1:9/x/a',
    });
  });
});

describe('the dummy key', () => {
  it.each([
    ['a=1', 'a=1'],
    [`key=${DUMMY_KEY}&a=1`, 'a=1'],
    [`a=1&api_key=${DUMMY_KEY}`, 'a=1'],
    [`key=${DUMMY_KEY}`, ''],
  ])('query %s -> %s', (q, want) => {
    expect(queryWithoutDummyKey(q)).toBe(want);
  });
  it('is recognised inside any header value', () => {
    expect(holdsDummyKey(`Bearer ${DUMMY_KEY}`)).toBe(true);
    expect(holdsDummyKey('Bearer sk-other')).toBe(false);
  });
});

describe('forward proxy', () => {
  it.each([
    ['', '/v1/x', '/svc/v1/x'],
    ['', '/', '/svc/'],
    ['', '/?a=1', '/svc/?a=1'],
    ['/api/1.0', '/api/1.0/users/me', '/svc/users/me'],
    ['/api/1.0', '/api/1.0', '/svc/'],
    ['/api/1.0', '/api/1.0?x=1', '/svc/?x=1'],
    ['/api/1.0', '/api/1.0x/users', undefined],
    ['/api/1.0', '/other', undefined],
  ])('prefix %j, target %s -> %s', (pathPrefix, target, want) => {
    expect(serviceTarget({ service: 'svc', pathPrefix }, target)).toBe(want);
  });
  it('sets both spellings, loopback NO_PROXY and the CA variables', () => {
    const env = forwardProxyEnvironment('http://127.0.0.1:9', {
      dir: '/d',
      ca: '/d/ca.pem',
      bundle: '/d/bundle.pem',
    });
    expect(env).toMatchObject({
      HTTPS_PROXY: 'http://127.0.0.1:9',
      http_proxy: 'http://127.0.0.1:9',
      NO_PROXY: '127.0.0.1,localhost,::1',
      NODE_EXTRA_CA_CERTS: '/d/ca.pem',
      SSL_CERT_FILE: '/d/bundle.pem',
      GIT_SSL_CAINFO: '/d/bundle.pem',
    });
    expect(forwardProxyEnvironment('http://127.0.0.1:9', undefined).SSL_CERT_FILE).toBeUndefined();
  });
});
