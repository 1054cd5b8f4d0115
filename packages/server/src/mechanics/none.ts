/**
 * `none`: forwards the request without injecting anything (public upstreams).
 */
import { z } from 'zod';
import type { Mechanic, MechanicDefinition } from './mechanic.js';

/** Options of `auth: { type: none }`: nothing to configure. */
export const noneOptionsSchema = z.strictObject({});

/** Options of the `none` mechanic. */
export type NoneOptions = z.infer<typeof noneOptionsSchema>;

/** The `none` mechanic: no credential, no injected header. */
export const noneMechanic: MechanicDefinition<NoneOptions> = {
  type: 'none',
  optionsSchema: noneOptionsSchema,
  create(): Mechanic {
    return {
      type: 'none',
      injectedHeaders: [],
      injectedQueryParams: [],
      apply: () => Promise.resolve({ secrets: [] }),
    };
  },
};
