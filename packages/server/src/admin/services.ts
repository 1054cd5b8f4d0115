/**
 * Admin API for services from presets: `GET /v1/presets` (the ready service definitions,
 * data only, no secret) and `POST /v1/services` (add one to nexus.yaml and reload; admin
 * role, audited as `service.add`). The credential's values are set apart, with
 * `nexus credential set` or `PUT /v1/credentials/{name}`: this route never takes one.
 */
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { PRESETS } from '../presets/presets.js';
import { presetToJson } from '../presets/apply.js';
import { SERVICE_NAME_RE } from '../config/names.js';

/** The body of `POST /v1/services`. */
export interface AddServiceInput {
  readonly name: string;
  readonly preset: string;
  /** The vault credential name (default: the service name). */
  readonly credential?: string;
  /** Replaces the preset's upstream. */
  readonly upstream?: string;
  /** Values for the preset's `{variables}`. */
  readonly vars?: Readonly<Record<string, string>>;
}

const addServiceBody = z.strictObject({
  name: z.string().regex(SERVICE_NAME_RE),
  preset: z.string().min(1).max(64),
  credential: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,128}$/)
    .optional(),
  upstream: z.string().url().max(2048).optional(),
  vars: z
    .record(z.string().regex(/^[a-z_][a-z0-9_]{0,63}$/), z.string().min(1).max(256))
    .optional(),
});

export interface ServiceRoute {
  readonly method: string;
  readonly path: string;
  readonly handler: (ctx: { body: unknown; res: { statusCode: number } }) => Promise<unknown>;
}

/** The routes; `add` is absent on a node that does not know its config file. */
export function serviceRoutes(add: ((input: AddServiceInput) => Promise<unknown>) | undefined) {
  const routes: ServiceRoute[] = [
    {
      method: 'GET',
      path: '/v1/presets',
      handler: async () => ({ presets: PRESETS.map(presetToJson) }),
    },
    {
      method: 'POST',
      path: '/v1/services',
      handler: async ({ body, res }) => {
        if (add === undefined) throw new NexusError('method_not_allowed');
        const r = addServiceBody.safeParse(body ?? {});
        if (!r.success) {
          const where = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
          throw new NexusError('validation_failed', where.join('; ').slice(0, 500));
        }
        const out = await add(r.data);
        res.statusCode = 201;
        return out;
      },
    },
  ];
  return routes;
}
