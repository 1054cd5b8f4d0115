/**
 * `hmac`: signs each request with an HMAC over a configurable string to sign, for APIs and
 * webhooks that authenticate with a shared secret (Stripe-style `t=...,v1=...`,
 * Coinbase-style `CB-ACCESS-SIGN`, GitHub-style `sha256=...`). Presets live in
 * `hmac-presets.ts`; any option overrides the preset's.
 *
 * The string to sign is a template over request facts:
 * `{{method}}` (upper case), `{{path}}` (as sent, percent-encoded), `{{query}}` (raw, no `?`),
 * `{{request_target}}` (path plus `?query` when there is one), `{{timestamp}}`,
 * `{{body}}` (the raw body bytes), `{{body_sha256_hex}}`, `{{body_sha256_base64}}`,
 * `{{nonce}}` (fresh per request) and `{{key_id}}` (credential field `key_id`).
 * A list of lines is joined with `\n`.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  applied,
  assertHeaderSafe,
  renderTemplate,
  requireField,
  SecretSet,
  templateNames,
} from './credential.js';
import { credentialUnavailable } from './errors.js';
import { HMAC_PRESET_NAMES, HMAC_PRESETS, type HmacPresetName } from './hmac-presets.js';
import type { Mechanic, MechanicDefinition, OutboundRequest } from './mechanic.js';
import { credentialName, fieldName, headerName } from './schema.js';

const STRING_TO_SIGN_VARS = [
  'method',
  'path',
  'query',
  'request_target',
  'timestamp',
  'body',
  'body_sha256_hex',
  'body_sha256_base64',
  'nonce',
  'key_id',
] as const;
const SIGNATURE_VARS = ['signature', 'timestamp', 'nonce', 'key_id'] as const;

const template = (allowed: readonly string[]) =>
  z
    .string()
    .min(1)
    .max(2048)
    .refine(
      (t) => templateNames(t).every((n) => allowed.includes(n)),
      `placeholders must be among: ${allowed.join(', ')}`,
    )
    .refine((t) => !/\{\{|\}\}/.test(renderTemplate(t, () => '')), 'unbalanced {{ or }}');

/** The options after the preset is merged in: what the mechanic runs with. */
export const hmacResolvedSchema = z.strictObject({
  credential: credentialName,
  preset: z.enum(HMAC_PRESET_NAMES).optional(),
  algorithm: z.enum(['sha256', 'sha512', 'sha1']),
  string_to_sign: z.union([
    template(STRING_TO_SIGN_VARS),
    z
      .array(template(STRING_TO_SIGN_VARS).or(z.literal('')))
      .min(1)
      .transform((lines) => lines.join('\n')),
  ]),
  signature_header: headerName,
  signature_template: template(SIGNATURE_VARS)
    .refine((t) => templateNames(t).includes('signature'), 'must use {{signature}}')
    // eslint-disable-next-line no-control-regex
    .refine((t) => !/[\u0000-\u001f\u007f]/.test(t), 'must not contain control characters')
    .default('{{signature}}'),
  timestamp_header: headerName.optional(),
  timestamp_format: z.enum(['unix', 'unix_ms', 'iso']).default('unix'),
  encoding: z.enum(['hex', 'base64']).default('hex'),
  /** How the credential's `secret` field is turned into key bytes. */
  secret_encoding: z.enum(['utf8', 'base64', 'hex']).default('utf8'),
  /** Header carrying the credential field `key_id`. */
  key_id_header: headerName.optional(),
  /** Header carrying the `{{nonce}}` of the request. */
  nonce_header: headerName.optional(),
  /** Extra headers copied from credential fields: `{ header-name: field }`. */
  credential_headers: z.record(headerName, fieldName).default({}),
});

/** Options of the `hmac` mechanic (preset merged, defaults applied). */
export type HmacOptions = z.infer<typeof hmacResolvedSchema>;

/**
 * Options of `auth: { type: hmac, ... }`: every option optional so a preset can supply it;
 * the merged result is validated against `hmacResolvedSchema`.
 */
export const hmacOptionsSchema: z.ZodType<HmacOptions> = z
  .looseObject({ preset: z.enum(HMAC_PRESET_NAMES).optional() })
  .transform((input, ctx) => {
    const preset = input.preset === undefined ? {} : HMAC_PRESETS[input.preset as HmacPresetName];
    const result = hmacResolvedSchema.safeParse({ ...preset, ...input });
    if (!result.success) {
      for (const issue of result.error.issues) {
        ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
      }
      return z.NEVER;
    }
    return result.data;
  });

function formatTimestamp(now: number, format: HmacOptions['timestamp_format']): string {
  switch (format) {
    case 'unix':
      return String(Math.floor(now / 1000));
    case 'unix_ms':
      return String(Math.floor(now));
    case 'iso':
      return new Date(now).toISOString();
  }
}

/** The request facts a string-to-sign template may use (body kept as bytes). */
export function requestFacts(
  request: OutboundRequest,
): Record<'method' | 'path' | 'query' | 'request_target', string> & { body: Uint8Array } {
  const query = request.url.search.replace(/^\?/, '');
  return {
    method: request.method.toUpperCase(),
    path: request.url.pathname,
    query,
    request_target: request.url.pathname + (query === '' ? '' : `?${query}`),
    body: request.body ?? new Uint8Array(),
  };
}

/**
 * Renders a template to bytes. `{{body}}` inserts the raw body bytes (not a decoded
 * string), so non-UTF-8 bodies sign exactly as sent.
 */
export function renderToBytes(
  tmpl: string,
  vars: Readonly<Record<string, string | Uint8Array>>,
): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  for (const match of tmpl.matchAll(/\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g)) {
    parts.push(Buffer.from(tmpl.slice(last, match.index), 'utf8'));
    const value = vars[match[1] as string] ?? '';
    parts.push(typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value));
    last = match.index + match[0].length;
  }
  parts.push(Buffer.from(tmpl.slice(last), 'utf8'));
  return Buffer.concat(parts);
}

/** Test seams: the nonce source (default 16 random bytes, hex). */
export interface HmacMechanicHooks {
  readonly nonce?: () => string;
}

/** Builds an `hmac` mechanic; `hooks` lets tests fix the nonce. */
export function createHmacMechanic(options: HmacOptions, hooks: HmacMechanicHooks = {}): Mechanic {
  const nonceOf = hooks.nonce ?? (() => randomBytes(16).toString('hex'));
  const uses = new Set([
    ...templateNames(options.string_to_sign),
    ...templateNames(options.signature_template),
  ]);
  const needsKeyId = uses.has('key_id') || options.key_id_header !== undefined;
  const injected = [
    options.signature_header,
    options.timestamp_header,
    options.key_id_header,
    options.nonce_header,
    ...Object.keys(options.credential_headers),
  ].filter((h): h is string => h !== undefined);
  return {
    type: 'hmac',
    injectedHeaders: [...new Set(injected)],
    injectedQueryParams: [],
    async apply(request, ctx) {
      const credential = await ctx.credential(options.credential);
      const secret = requireField(credential, 'secret');
      const keyId = needsKeyId ? requireField(credential, 'key_id') : undefined;
      // The key signs; it never travels. Only the key id and credential headers do.
      const secrets = new SecretSet().add(keyId);
      const key = Buffer.from(secret, options.secret_encoding);
      if (key.length === 0) {
        throw credentialUnavailable(
          `credential "${credential.name}" field "secret" is not ${options.secret_encoding}`,
        );
      }
      const timestamp = formatTimestamp(ctx.now, options.timestamp_format);
      const nonce = uses.has('nonce') || options.nonce_header !== undefined ? nonceOf() : '';
      const facts = requestFacts(request);
      const bodyHash = createHash('sha256').update(facts.body).digest();
      const message = renderToBytes(options.string_to_sign, {
        ...facts,
        timestamp,
        nonce,
        key_id: keyId ?? '',
        body_sha256_hex: bodyHash.toString('hex'),
        body_sha256_base64: bodyHash.toString('base64'),
      });
      const signature = createHmac(options.algorithm, key).update(message).digest(options.encoding);
      const sigVars: Record<string, string> = { signature, timestamp, nonce, key_id: keyId ?? '' };
      request.headers[options.signature_header] = renderTemplate(
        options.signature_template,
        (name) => sigVars[name] ?? '',
      );
      if (options.timestamp_header !== undefined)
        request.headers[options.timestamp_header] = timestamp;
      if (options.nonce_header !== undefined) request.headers[options.nonce_header] = nonce;
      if (options.key_id_header !== undefined && keyId !== undefined) {
        request.headers[options.key_id_header] = assertHeaderSafe(credential, keyId);
      }
      for (const [header, field] of Object.entries(options.credential_headers)) {
        const value = assertHeaderSafe(credential, requireField(credential, field));
        request.headers[header] = value;
        secrets.add(value);
      }
      return applied(credential, secrets);
    },
  };
}

/** The `hmac` mechanic. */
export const hmacMechanic: MechanicDefinition<HmacOptions> = {
  type: 'hmac',
  optionsSchema: hmacOptionsSchema,
  create: (_service, options) => createHmacMechanic(options),
};
