/**
 * `basic`: HTTP Basic authentication (RFC 7617), `Authorization: Basic base64(user:pass)`.
 */
import { z } from 'zod';
import { credentialUnavailable } from './errors.js';
import { applied, assertHeaderSafe, requireField, SecretSet } from './credential.js';
import type { Mechanic, MechanicDefinition } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';

/** Options of `auth: { type: basic, ... }`. */
export const basicOptionsSchema = z.strictObject({
  credential: credentialName,
  username_field: fieldName.default('username'),
  password_field: fieldName.default('password'),
});

/** Options of the `basic` mechanic. */
export type BasicOptions = z.infer<typeof basicOptionsSchema>;

/** The `basic` mechanic. */
export const basicMechanic: MechanicDefinition<BasicOptions> = {
  type: 'basic',
  optionsSchema: basicOptionsSchema,
  create(_service, options): Mechanic {
    return {
      type: 'basic',
      injectedHeaders: ['authorization'],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const username = requireField(credential, options.username_field);
        // An empty password is legitimate (e.g. API keys sent as `key:`).
        const password = requireField(credential, options.password_field, { allowEmpty: true });
        // RFC 7617 section 2: the user-id MUST NOT contain a colon; control characters are
        // not allowed in either part.
        if (username.includes(':')) {
          throw credentialUnavailable(
            `credential "${credential.name}" field "${options.username_field}" contains ':'`,
          );
        }
        // eslint-disable-next-line no-control-regex
        if (/[\0-\x1f\x7f]/.test(username) || /[\0-\x1f\x7f]/.test(password)) {
          throw credentialUnavailable(
            `credential "${credential.name}" has control characters in its username or password`,
          );
        }
        const token = Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
        const value = assertHeaderSafe(credential, `Basic ${token}`);
        request.headers['authorization'] = value;
        // `user:pass` travels (in base64): two short parts can make a long enough secret.
        return applied(
          credential,
          // The parts, and what travels: `user:pass` and its base64 token (an upstream that
          // base64-encodes or hex-dumps the header hands back the token under one layer).
          new SecretSet().add(username, password, `${username}:${password}`, token),
        );
      },
    };
  },
};
