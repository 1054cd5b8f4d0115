import { describe, expect, it } from 'vitest';
import { parseRoute } from './route.js';

function codeOf(target: string): string | undefined {
  try {
    parseRoute(target);
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('parseRoute', () => {
  it.each([
    ['/github/repos/a/b', 'github', '/repos/a/b', '/repos/a/b', ''],
    ['/github', 'github', '', '/', ''],
    ['/github/', 'github', '/', '/', ''],
    ['/github/repos/a%20b?x=1&y=%2F', 'github', '/repos/a%20b', '/repos/a b', 'x=1&y=%2F'],
    ['/svc-1/a/b/', 'svc-1', '/a/b/', '/a/b/', ''],
  ])('routes %s', (target, service, rawPath, path, query) => {
    expect(parseRoute(target)).toEqual({ service, rawPath, path, query });
  });

  it.each([
    ['/github/../admin', 'path_invalid'],
    ['/github/a/./b', 'path_invalid'],
    ['/github/a/%2e%2e/b', 'path_invalid'],
    ['/github/a/%2E%2E/b', 'path_invalid'],
    ['/github/a%2fb', 'path_invalid'],
    ['/github/a%2Fb', 'path_invalid'],
    ['/github/a%5cb', 'path_invalid'],
    ['/github/a\\b', 'path_invalid'],
    ['/github//etc', 'path_invalid'],
    ['//evil.example/x', 'path_invalid'],
    ['/github/a%00b', 'path_invalid'],
    ['/github/a%zzb', 'path_invalid'],
    ['/github/a%ffb', 'path_invalid'],
    ['/github/a b', 'path_invalid'],
    ['/github/ä', 'path_invalid'],
    ['http://evil.example/github/x', 'request_invalid'],
    ['*', 'request_invalid'],
    ['/GitHub/x', 'service_unknown'],
    ['/v1/x', 'service_unknown'],
    ['/.well-known/x', 'service_unknown'],
    ['/gith%75b/x', 'service_unknown'],
    ['/ｇithub/x', 'service_unknown'],
    ['/github/x?a=\u0000', 'request_invalid'],
  ])('rejects %s with %s', (target, code) => {
    expect(codeOf(target)).toBe(code);
  });
});
