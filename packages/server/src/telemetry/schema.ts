// The `telemetry:` section of nexus.yaml: OpenTelemetry traces exported over OTLP/HTTP
// (JSON). Absent (the default): no tracer is built and the pipeline pays nothing for it.
import { z } from 'zod';

/** `telemetry.traces` as parsed. */
export interface TracesConfig {
  /** The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. */
  readonly otlp_endpoint: string;
  /** Share of requests traced, 0 to 1 (default 1). Nexus decides; the agent cannot. */
  readonly sample_ratio: number;
  /** `service.name` of the exported resource (default `nexus`). */
  readonly service_name: string;
}

/** `telemetry` as parsed. */
export interface TelemetryConfig {
  /** Undefined: tracing is off. */
  readonly traces?: TracesConfig;
}

const endpoint = z.string().superRefine((s, ctx) => {
  let u: URL | undefined;
  try {
    u = new URL(s);
  } catch {
    u = undefined;
  }
  if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be an http or https URL, e.g. http://127.0.0.1:4318/v1/traces',
    });
  } else if (u.username !== '' || u.password !== '') {
    // MUST NOT carry secrets: nexus.yaml is not a secret store.
    ctx.addIssue({ code: 'custom', message: 'must not contain a user name or password' });
  }
});

/** The `telemetry` schema. */
export const telemetrySchema = z
  .strictObject({
    traces: z
      .strictObject({
        otlp_endpoint: endpoint,
        sample_ratio: z.number().min(0).max(1).default(1),
        service_name: z
          .string()
          .regex(
            /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
            'must be a name (letters, digits, ".", "_", "-")',
          )
          .default('nexus'),
      })
      .optional(),
  })
  .prefault({})
  .transform((t): TelemetryConfig => (t.traces === undefined ? {} : { traces: t.traces }));
