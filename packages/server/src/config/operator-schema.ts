// The nexus.yaml sections for the operator's seat: `admin.metrics` (the Prometheus
// endpoint) and `limits` (rate limits and budgets, limits/schema.ts). Kept out of
// schema.ts so that file only wires them in.
import { resolve } from 'node:path';
import { z } from 'zod';

/** `admin.metrics` as parsed. */
export interface MetricsConfig {
  /** Serve `GET /metrics` on the admin listener (default true). */
  readonly enabled: boolean;
  /** `token`: a scrape token or an operator token is required; `none`: open. */
  readonly auth: 'token' | 'none';
  /** Absolute path of a file holding the scrape token (grants `/metrics` only). */
  readonly token_file?: string;
}

/** The `admin.metrics` schema; `token_file` resolves against the config's directory. */
export function metricsSchema(baseDir: string) {
  return z
    .strictObject({
      enabled: z.boolean().default(true),
      auth: z.enum(['token', 'none']).default('token'),
      token_file: z
        .string()
        .min(1)
        .transform((p) => resolve(baseDir, p))
        .optional(),
    })
    .prefault({})
    .transform((m): MetricsConfig => m);
}
