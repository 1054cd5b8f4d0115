/**
 * `query`: puts a credential field into one query parameter (`?api_key=...`), replacing any
 * copy the agent sent. The rest of the query string is kept byte for byte.
 */
import { z } from 'zod';
import { applied, requireField, SecretSet } from './credential.js';
import type { Mechanic, MechanicDefinition } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';

/** Options of `auth: { type: query, ... }`. */
export const queryOptionsSchema = z.strictObject({
  credential: credentialName,
  /** Query parameter name, matched exactly (after percent-decoding) when replacing. */
  param: z.string().regex(/^[A-Za-z0-9_.~-]{1,128}$/, 'must be a plain query parameter name'),
  field: fieldName.default('value'),
});

/** Options of the `query` mechanic. */
export type QueryOptions = z.infer<typeof queryOptionsSchema>;

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * Returns `search` (without `?`) with every `param` pair removed and `param=value` appended.
 * Removal compares the decoded name so `api%5Fkey` cannot smuggle a second copy through.
 */
export function replaceQueryParam(search: string, param: string, encodedValue: string): string {
  const kept = search
    .split('&')
    .filter((pair) => pair !== '')
    .filter((pair) => {
      const eq = pair.indexOf('=');
      return decodeName(eq === -1 ? pair : pair.slice(0, eq)) !== param;
    });
  kept.push(`${param}=${encodedValue}`);
  return kept.join('&');
}

/** The `query` mechanic. */
export const queryMechanic: MechanicDefinition<QueryOptions> = {
  type: 'query',
  optionsSchema: queryOptionsSchema,
  create(_service, options): Mechanic {
    return {
      type: 'query',
      injectedHeaders: [],
      injectedQueryParams: [options.param],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const value = requireField(credential, options.field);
        const encoded = encodeURIComponent(value);
        const search = request.url.search.startsWith('?')
          ? request.url.search.slice(1)
          : request.url.search;
        request.url.search = `?${replaceQueryParam(search, options.param, encoded)}`;
        // The value and the bytes that travel: an upstream that encodes its own URL once more
        // (a login redirect's `return_to`) hands back the travelled form under one layer.
        return applied(credential, new SecretSet().add(value, encoded));
      },
    };
  },
};
