// LabelledHistogram (issue 14) MUST expose exactly what a prom-client Histogram fed the same
// observations exposes: /metrics stays byte for byte the same.
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabelledHistogram } from './histogram.js';

const BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

async function both(observations: [string, string, number][]): Promise<[string, string]> {
  const a = new Registry();
  const b = new Registry();
  const options = { name: 'x_seconds', help: 'a "help" \\ text', buckets: BUCKETS };
  const reference = new Histogram({
    ...options,
    labelNames: ['service', 'stage'] as const,
    registers: [a],
  });
  const fast = new LabelledHistogram({
    ...options,
    labelNames: ['service', 'stage'] as const,
    registers: [b],
  });
  for (const [service, stage, v] of observations) {
    reference.observe({ service, stage }, v);
    fast.observe({ service, stage }, v);
  }
  return [await a.metrics(), await b.metrics()];
}

describe('LabelledHistogram', () => {
  it('renders what prom-client renders for the same observations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.constantFrom('echo', 'git"hub', 'a\\b', 'new\nline', 'unknown'),
            fc.constantFrom('verify', 'policy', 'relay'),
            fc.oneof(
              fc.double({ min: 0, max: 100, noNaN: true }),
              fc.constantFrom(0, 0.0005, 0.001, 60, 60.0001, 1e9),
            ),
          ),
          { maxLength: 40 },
        ),
        async (observations) => {
          const [reference, fast] = await both(observations);
          expect(fast).toBe(reference);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('counts a value in its bucket, +Inf, _sum and _count, and forgets all on reset', async () => {
    const r = new Registry();
    const h = new LabelledHistogram({
      name: 'y_seconds',
      help: 'h',
      labelNames: ['kind'] as const,
      buckets: [0.1, 1],
      registers: [r],
    });
    const series = h.series({ kind: 'request' });
    series.observe(0.5);
    series.observe(2);
    const text = await r.metrics();
    expect(text).toContain('y_seconds_bucket{le="0.1",kind="request"} 0');
    expect(text).toContain('y_seconds_bucket{le="1",kind="request"} 1');
    expect(text).toContain('y_seconds_bucket{le="+Inf",kind="request"} 2');
    expect(text).toContain('y_seconds_sum{kind="request"} 2.5');
    expect(text).toContain('y_seconds_count{kind="request"} 2');
    expect(() => series.observe(Number.NaN)).toThrow(TypeError);
    r.resetMetrics();
    expect(await r.metrics()).not.toContain('kind="request"');
  });
});
