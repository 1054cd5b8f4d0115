// The `telemetry:` section (issue 15): off by default, the endpoint validated at load.
import { describe, expect, it } from 'vitest';
import { telemetrySchema } from './schema.js';

describe('telemetry schema', () => {
  it('is off when absent and fills the defaults of traces', () => {
    expect(telemetrySchema.parse(undefined)).toEqual({});
    expect(
      telemetrySchema.parse({ traces: { otlp_endpoint: 'http://127.0.0.1:4318/v1/traces' } }),
    ).toEqual({
      traces: {
        otlp_endpoint: 'http://127.0.0.1:4318/v1/traces',
        sample_ratio: 1,
        service_name: 'nexus',
      },
    });
  });

  it.each([
    [
      'a user and password in the endpoint',
      { otlp_endpoint: 'http://u:p@collector:4318/v1/traces' },
    ],
    ['a non-http endpoint', { otlp_endpoint: 'grpc://collector:4317' }],
    ['a ratio above 1', { otlp_endpoint: 'http://c:4318/v1/traces', sample_ratio: 1.5 }],
    ['an unknown key', { otlp_endpoint: 'http://c:4318/v1/traces', protocol: 'grpc' }],
  ])('refuses %s', (_what, traces) => {
    expect(telemetrySchema.safeParse({ traces }).success).toBe(false);
  });
});
