/**
 * `header`: sets one header from a template over credential fields, e.g.
 * `{ name: authorization, template: "token {{value}}" }` or `"{{key_id}}:{{secret}}"`.
 */
import { z } from 'zod';
import {
  applied,
  assertHeaderSafe,
  renderTemplate,
  requireField,
  SecretSet,
} from './credential.js';
import type { Mechanic, MechanicDefinition } from './mechanic.js';
import { credentialName, headerName, headerTemplate } from './schema.js';

/** Options of `auth: { type: header, ... }`. */
export const headerOptionsSchema = z.strictObject({
  credential: credentialName,
  /** Header to set (stored lower-case). */
  name: headerName,
  /** `{{field}}` placeholders name credential fields. Default: the field `value` as is. */
  template: headerTemplate.default('{{value}}'),
});

/** Options of the `header` mechanic. */
export type HeaderOptions = z.infer<typeof headerOptionsSchema>;

/** The `header` mechanic. */
export const headerMechanic: MechanicDefinition<HeaderOptions> = {
  type: 'header',
  optionsSchema: headerOptionsSchema,
  create(_service, options): Mechanic {
    return {
      type: 'header',
      injectedHeaders: [options.name],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const secrets = new SecretSet();
        const value = renderTemplate(options.template, (field) => {
          const v = requireField(credential, field);
          secrets.add(v);
          return v;
        });
        request.headers[options.name] = assertHeaderSafe(credential, value);
        secrets.add(value);
        return applied(credential, secrets);
      },
    };
  },
};
