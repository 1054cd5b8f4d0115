import { describe, expect, it } from 'vitest';
import { serviceTarget } from './route.js';

function codeOf(service: string, path: string): string | undefined {
  try {
    serviceTarget(service, path);
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

// Issue 10: the SDK's agent.fetch and the `nexus run` sidecar check their target with
// serviceTarget before signing; a spelling that reaches the Authority routes (or another
// service) after the URL parser's dot-segment removal must be refused here.
describe('serviceTarget', () => {
  it.each([
    ['github', '/repos/a/b', '/github/repos/a/b'],
    ['github', 'repos/a/b', '/github/repos/a/b'],
    ['github', '', '/github'],
    ['github', '/', '/github/'],
    ['github', '?page=2', '/github?page=2'],
    ['github', '/issues?q=a%2Fb&x=..', '/github/issues?q=a%2Fb&x=..'],
    ['svc-1', "/a/b;c/it's", "/svc-1/a/b;c/it's"],
  ])('accepts %s %s as %s, which the URL parser leaves unchanged', (service, path, target) => {
    expect(serviceTarget(service, path)).toBe(target);
    const url = new URL(`http://127.0.0.1:7070${target}`);
    expect(url.pathname + url.search).toBe(target);
  });

  it.each([
    ['..', '/v1/leases/renew', 'service_unknown'],
    ['.', '/v1/leases/renew', 'service_unknown'],
    ['%2e%2e', '/v1/leases/renew', 'service_unknown'],
    ['v1', '/leases/renew', 'service_unknown'],
    ['.well-known', '/jwks.json', 'service_unknown'],
    ['GitHub', '/x', 'service_unknown'],
    ['github/..', '/x', 'service_unknown'],
    ['github?x=1', '', 'service_unknown'],
    ['', '/v1/leases', 'service_unknown'],
    ['ｇithub', '/x', 'service_unknown'],
    ['github', '/../v1/leases/renew', 'path_invalid'],
    ['github', '/a/../../v1/leases/renew', 'path_invalid'],
    ['github', '/%2e%2e/v1/leases/renew', 'path_invalid'],
    ['github', '/%2E%2e/v1/leases/renew', 'path_invalid'],
    ['github', '/.%2e/v1/leases/renew', 'path_invalid'],
    ['github', '/%2e./x', 'path_invalid'],
    ['github', '..', 'path_invalid'],
    ['github', '/./x', 'path_invalid'],
    ['github', '/..;/admin', 'path_invalid'],
    ['github', '/..\\v1', 'path_invalid'],
    ['github', '/a%5c..%5cb', 'path_invalid'],
    ['github', '/a%2f..%2fb', 'path_invalid'],
    ['github', '//evil.example/x', 'path_invalid'],
    ['github', '/a\t/../b', 'path_invalid'],
    ['github', '/a\n/b', 'path_invalid'],
    ['github', '/a%00', 'path_invalid'],
    ['github', '/a#frag', 'path_invalid'],
    ['github', '/x?a=b#frag', 'request_invalid'],
    ['github', '/x?a b', 'request_invalid'],
  ])('refuses %s %s with %s', (service, path, code) => {
    expect(codeOf(service, path)).toBe(code);
  });
});
