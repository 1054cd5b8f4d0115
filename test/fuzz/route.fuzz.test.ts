/**
 * Issue 6 fuzzing: service routing and path normalisation (proxy/route.ts). Targets are
 * built from the pieces path attacks are made of (dots, encoded dots and slashes,
 * backslashes, `;`, `?`, `#`, controls, non-ASCII). Properties: only NexusError is thrown;
 * an accepted path has no dot segment, empty segment or backslash, raw or decoded; the
 * upstream URL the pipeline builds from it stays under the service's base path, is not
 * re-normalised by the URL parser, and decodes to exactly the path policy matched.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import {
  parseRoute,
  RESERVED_SERVICE_NAMES,
  SERVICE_NAME,
  type Route,
} from '../../packages/server/src/proxy/route.js';
import { params, TIMEOUT } from './runs.js';

const PIECES = [
  '/',
  '/',
  '/',
  '.',
  '..',
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '\\',
  '%25',
  '%',
  '%0',
  '%00',
  '%0a',
  '%7f',
  '%20',
  '%41',
  '%e2%80%ae',
  '%c0%ae',
  '%ff',
  ';',
  ';a=b',
  '?',
  '#',
  '&',
  '=',
  '+',
  '~',
  ':',
  '@',
  '!',
  '$',
  "'",
  '(',
  '*',
  ',',
  'a',
  'b',
  'echo',
  'api',
  'v1',
  '.well-known',
  'ECHO',
  '\u0435',
  '\u00e9',
  ' ',
  '\t',
  '\u0000',
  '\r\n',
  '//',
  '/..',
  '/.',
  '..;',
];
const target = fc.oneof(
  fc.array(fc.constantFrom(...PIECES), { maxLength: 14 }).map((p) => p.join('')),
  fc.array(fc.constantFrom(...PIECES), { maxLength: 12 }).map((p) => `/echo/${p.join('')}`),
  fc.string({ maxLength: 40 }).map((s) => `/echo/${s}`),
  fc.string({ maxLength: 40 }),
);

function route(t: string): Route | undefined {
  try {
    return parseRoute(t);
  } catch (err) {
    expect(
      isNexusError(err) &&
        ['path_invalid', 'request_invalid', 'service_unknown'].includes(err.code),
    ).toBe(true);
    return undefined;
  }
}

describe('fuzz: path normalisation cannot be escaped', () => {
  it(
    'accepted paths are normal, raw and decoded',
    () => {
      fc.assert(
        fc.property(target, (t) => {
          const r = route(t);
          if (r === undefined) return;
          expect(SERVICE_NAME.test(r.service) && !RESERVED_SERVICE_NAMES.has(r.service)).toBe(true);
          expect(r.rawPath === '' || r.rawPath.startsWith('/')).toBe(true);
          expect(r.path.startsWith('/')).toBe(true);
          for (const p of [r.rawPath, r.path]) {
            const segments = p.split('/').slice(1);
            segments.forEach((s, i) => {
              expect(s === '.' || s === '..').toBe(false);
              if (i < segments.length - 1) expect(s).not.toBe('');
            });
            expect(p).not.toContain('\\');
            // eslint-disable-next-line no-control-regex
            expect(p).not.toMatch(/[\u0000-\u001f\u007f]/);
          }
          // Decoding never splits or merges a segment.
          expect(r.path.split('/').length).toBe(Math.max(r.rawPath.split('/').length, 2));
          // eslint-disable-next-line no-control-regex
          expect(r.query).not.toMatch(/[\u0000-\u0020\u007f-\uffff#]/);
        }),
        params(5000),
      );
    },
    TIMEOUT,
  );

  it(
    'the forwarded URL stays under the base path and means what policy matched',
    () => {
      fc.assert(
        fc.property(target, fc.constantFrom('', '/base', '/a/b'), (t, basePath) => {
          const r = route(t);
          if (r === undefined) return;
          // Exactly how proxy/pipeline.ts builds the upstream target.
          const path = `${basePath}${r.rawPath}` || '/';
          const url = new URL(`http://upstream.example:8080${path}${r.query ? `?${r.query}` : ''}`);
          expect(url.host).toBe('upstream.example:8080');
          expect(url.pathname).toBe(path);
          if (basePath !== '')
            expect(url.pathname === basePath || url.pathname.startsWith(`${basePath}/`)).toBe(true);
          const seenUpstream = decodeURIComponent(url.pathname.slice(basePath.length)) || '/';
          expect(seenUpstream).toBe(r.path);
          expect([...url.searchParams]).toEqual([...new URLSearchParams(`?${r.query}`)]);
        }),
        params(5000),
      );
    },
    TIMEOUT,
  );

  it(
    'no accepted target leaves its service: prefixing the service is injective',
    () => {
      fc.assert(
        fc.property(target, target, (a, b) => {
          const ra = route(a);
          const rb = route(b);
          if (ra === undefined || rb === undefined || ra.service === rb.service) return;
          // Two different services never forward to the same service-relative path bytes
          // unless the agent asked for exactly that path on each.
          expect(`/${ra.service}${ra.rawPath}`).not.toBe(`/${rb.service}${rb.rawPath}`);
        }),
        params(3000),
      );
    },
    TIMEOUT,
  );
});
