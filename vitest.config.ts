// Vitest runs the TypeScript sources directly: each workspace package resolves to its src/.
// Tests that spawn the `nexus` CLI use the built dist/ (npm test runs `tsc -b` first).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string, entry = 'index.ts'): string =>
  fileURLToPath(new URL(`./packages/${pkg}/src/${entry}`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@nexus-proxy/protocol': src('protocol'),
      '@nexus-proxy/sdk': src('sdk'),
      // Before '@nexus-proxy/server', which would also match it as a prefix.
      '@nexus-proxy/server/config': src('server', 'config-entry.ts'),
      '@nexus-proxy/server': src('server'),
      'nexus-proxy': src('cli'),
    },
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
