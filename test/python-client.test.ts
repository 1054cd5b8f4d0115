/**
 * The Python client offline (clients/python, issue 11): the language-neutral conformance
 * vectors (vectors/, spec §14) run by clients/python/tests/run_vectors.py (every vector's
 * verdict and code, every signature base byte for byte, the library's own signer
 * reproducing the Nexus accept vectors of both signature profiles, the library's verifier
 * of signed Nexus responses on every `nexus-response` vector), and the library's unit
 * tests (target checks, intent, profiles, window, keys, forged refusals). Runs under every Python found that imports `cryptography`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers/node.js';
import { findPythons, runPython } from './helpers/python.js';

const SUITES = ['rfc9421', 'rfc9530', 'wimse', 'nexus', 'nexus-1.1'];
const { found: pythons, skipped } = findPythons();
// Skipped locally without one, never in CI (.ci/run installs python3-cryptography).
const RUN = pythons.length > 0 || process.env.CI === 'true';
if (!RUN)
  console.log(`python conformance skipped: no Python with cryptography (${skipped.join('; ')})`);

/** How many vectors each suite holds (a JSON file with `id` and `expected`, spec §14.2). */
function vectorCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const suite of SUITES) {
    const dir = join(REPO, 'vectors', suite);
    counts[suite] = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>)
      .filter((v) => 'id' in v && 'expected' in v).length;
  }
  return counts;
}

/** How many `kind: "nexus-response"` vectors nexus-1.1 holds (spec §10.4). */
function responseVectors(): number {
  const dir = join(REPO, 'vectors', 'nexus-1.1');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .filter(
      (f) =>
        (JSON.parse(readFileSync(join(dir, f), 'utf8')) as { kind?: string }).kind ===
        'nexus-response',
    ).length;
}

describe.skipIf(!RUN)('the Python client offline', () => {
  it('has a Python with cryptography', () => {
    expect(pythons, skipped.join('; ')).not.toEqual([]);
  });

  it.each(pythons.map((p) => [p.version, p] as const))(
    'Python %s passes every conformance vector',
    async (_, python) => {
      const run = await runPython(python, ['tests/run_vectors.py', join(REPO, 'vectors')]);
      const lines = run.stdout.trim().split('\n');
      const result = JSON.parse(lines.at(-1) ?? '{}') as {
        passed: number;
        failed: number;
        signer_reproduced: number;
        responses_verified: number;
        by_suite: Record<string, { passed: number; failed: number }>;
      };
      console.log(
        `python conformance (${python.version}): ${result.passed} passed, ${result.failed} failed, ` +
          `${result.signer_reproduced} Nexus accept vectors re-signed by nexus_lease, ` +
          `${result.responses_verified} nexus-response vectors judged by its verifier; by suite ` +
          SUITES.map((s) => `${s} ${result.by_suite[s]?.passed}`).join(', '),
      );
      expect(lines.filter((l) => l.startsWith('FAIL'))).toEqual([]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const expected = vectorCounts();
      for (const suite of SUITES) {
        expect(result.by_suite[suite]).toEqual({ passed: expected[suite], failed: 0 });
      }
      // Every Nexus accept vector this signer could have emitted (the exact component list
      // of §4.2 and a sha-256 digest) was reproduced by the library.
      expect(result.signer_reproduced).toBeGreaterThanOrEqual(16);
      // Every signed-response vector (a signed refusal and the forms that must be refused)
      // was judged by nexus_lease.response.verify_response.
      expect(result.responses_verified).toBe(responseVectors());
      expect(result.responses_verified).toBeGreaterThanOrEqual(7);
    },
  );

  it.each(pythons.map((p) => [p.version, p] as const))(
    'Python %s passes the library unit tests',
    async (_, python) => {
      const run = await runPython(python, ['-m', 'unittest', 'discover', '-s', 'tests', '-v']);
      const ran = /Ran (\d+) tests?/.exec(run.stderr);
      console.log(`python unit tests (${python.version}): ${ran?.[1] ?? 0} ran`);
      expect(run.stderr).toMatch(/\nOK\n?$/);
      expect(run.code).toBe(0);
      expect(Number(ran?.[1])).toBeGreaterThanOrEqual(19);
    },
  );
});
