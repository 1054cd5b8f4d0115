/**
 * `bearer`: `Authorization: Bearer <token>` (RFC 6750) from one credential field.
 */
import { z } from 'zod';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import type { Mechanic, MechanicDefinition } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';

/** Options of `auth: { type: bearer, ... }`. */
export const bearerOptionsSchema = z.strictObject({
  credential: credentialName,
  /** Credential field holding the token. */
  field: fieldName.default('value'),
});

/** Options of the `bearer` mechanic. */
export type BearerOptions = z.infer<typeof bearerOptionsSchema>;

/** The `bearer` mechanic. */
export const bearerMechanic: MechanicDefinition<BearerOptions> = {
  type: 'bearer',
  optionsSchema: bearerOptionsSchema,
  create(_service, options): Mechanic {
    return {
      type: 'bearer',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const token = requireField(credential, options.field);
        const value = assertHeaderSafe(credential, `Bearer ${token}`);
        request.headers['authorization'] = value;
        return applied(credential, new SecretSet().add(token));
      },
    };
  },
};
