/**
 * Run counts for the property-based fuzzers (issue 6). `npm test` runs a bounded number
 * of cases per property; `FUZZ_RUNS=100000 npx vitest run test/fuzz` (or `npm run fuzz`)
 * runs that many for every property, with no time limit, and `FUZZ_SEED` replays a run.
 */
const requested = Number(process.env.FUZZ_RUNS ?? '');
const seed = Number(process.env.FUZZ_SEED ?? '');

/** True when a long, on-demand run was asked for. */
export const LONG_RUN = Number.isInteger(requested) && requested > 0;

/** fast-check parameters: `fallback` runs in `npm test`, FUZZ_RUNS when set. */
export function params(fallback: number): { numRuns: number; seed?: number } {
  return {
    numRuns: LONG_RUN ? requested : fallback,
    ...(Number.isInteger(seed) && process.env.FUZZ_SEED ? { seed } : {}),
  };
}

/** Per-test timeout: the default in `npm test`, a day for a long run. */
export const TIMEOUT = LONG_RUN ? 24 * 3600 * 1000 : 30_000;
