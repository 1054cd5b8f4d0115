// Runs every conformance vector under vectors/{rfc9421,rfc9530,wimse,nexus,nexus-1.1,delegation}, one test each,
// so `npm test` covers what `npm run conformance` checks against the built package.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isConformanceVector, runConformanceVector } from './conformance.js';

const root = new URL('../../../vectors/', import.meta.url);

describe.each(['rfc9421', 'rfc9530', 'wimse', 'nexus', 'nexus-1.1', 'delegation'])(
  'vectors/%s',
  (folder) => {
    const dir = new URL(`${folder}/`, root);
    const vectors = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as { id: string })
      .filter(isConformanceVector);
    it('has vectors', () => {
      expect(vectors.length).toBeGreaterThan(0);
    });
    it.each(vectors.map((v) => [v.id, v] as const))('%s', async (_id, vector) => {
      const result = await runConformanceVector(vector);
      expect(result.detail).toBe('');
      expect(result.passed).toBe(true);
    });
  },
);
