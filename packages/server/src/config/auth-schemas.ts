// The registry of `auth` option schemas, one per mechanic type. Config validation looks up
// `services.<name>.auth.type` here, so a new mechanic (oauth2, sigv4, hmac...) registers its
// schema and the loader needs no change. The built-in types are registered below.
import { z } from 'zod';

/** Vault credential names referenced by `auth.credential`. */
export const CREDENTIAL_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** A credential reference (a vault name, never a secret value). */
export const credentialRef = z
  .string()
  .regex(
    CREDENTIAL_NAME_RE,
    'must be a credential name (lowercase letters, digits, ".", "_", "-")',
  );

/** A credential field name (`value`, `username`, `client_secret`...). */
export const credentialField = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/, 'must be a credential field name');

// RFC 9110 token: header names.
const HEADER_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Headers a mechanic MUST NOT set: framing and routing belong to the proxy, and the
 * Nexus headers belong to the agent's signed request.
 */
export const FORBIDDEN_INJECTED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
  'workload-identity-token',
  'nexus-intent',
  'signature',
  'signature-input',
  'content-digest',
]);

/** A header name a mechanic may inject; lowercased on parse. */
export const headerName = z
  .string()
  .regex(HEADER_NAME_RE, 'must be an HTTP header name')
  .transform((s) => s.toLowerCase())
  .refine((s) => !FORBIDDEN_INJECTED_HEADERS.has(s), 'this header cannot be injected');

const PLACEHOLDER_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;

/** Field names used by a `{{field}}` template. */
export function templateFields(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER_RE)].map((m) => m[1] as string);
}

/** A header value template over credential fields: `token {{value}}`. */
export const headerTemplate = z
  .string()
  .min(1)
  .max(1024)
  .superRefine((t, ctx) => {
    const fields = templateFields(t);
    if (fields.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'template must use at least one {{field}}' });
    }
    for (const f of fields) {
      if (!credentialField.safeParse(f).success) {
        ctx.addIssue({ code: 'custom', message: 'template placeholder is not a field name' });
      }
    }
    const rest = t.replace(PLACEHOLDER_RE, '');
    if (rest.includes('{{') || rest.includes('}}')) {
      ctx.addIssue({ code: 'custom', message: 'template has an unbalanced {{ or }}' });
    }
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(rest)) {
      ctx.addIssue({ code: 'custom', message: 'template has control characters' });
    }
  });

/**
 * A mechanic's option schema: validates the `auth` block without its `type` key. It SHOULD
 * be a strict object (unknown keys are errors) and SHOULD apply its own defaults.
 */
export type MechanicSchema = z.ZodType<Record<string, unknown>>;

const registry = new Map<string, MechanicSchema>();

const MECHANIC_TYPE_RE = /^[a-z][a-z0-9_-]{0,63}$/;

/**
 * Registers the option schema for an `auth.type`. Call at module load, before config is
 * parsed. Re-registering a type replaces its schema.
 *
 * @example
 * registerMechanicSchema('hmac', z.strictObject({ credential: credentialRef, header: headerName }));
 */
export function registerMechanicSchema(type: string, schema: MechanicSchema): void {
  if (!MECHANIC_TYPE_RE.test(type)) throw new TypeError('invalid mechanic type name');
  registry.set(type, schema);
}

/** The option schema registered for `type`, if any. */
export function getMechanicSchema(type: string): MechanicSchema | undefined {
  return registry.get(type);
}

/** Every registered `auth.type`, sorted. */
export function registeredMechanicTypes(): string[] {
  return [...registry.keys()].sort();
}

// Built-in mechanics. Defaults live here, next to the option they fill in.

/** `none`: forward without credentials. */
registerMechanicSchema('none', z.strictObject({}));

/** `header`: `<name>: <template>`; the template defaults to the credential's `value`. */
registerMechanicSchema(
  'header',
  z.strictObject({
    credential: credentialRef,
    name: headerName,
    template: headerTemplate.default('{{value}}'),
  }),
);

/** `bearer`: `Authorization: Bearer <field>`; field defaults to `value`. */
registerMechanicSchema(
  'bearer',
  z.strictObject({
    credential: credentialRef,
    field: credentialField.default('value'),
  }),
);

/** `basic`: `Authorization: Basic base64(username:password)` from two credential fields. */
registerMechanicSchema(
  'basic',
  z.strictObject({
    credential: credentialRef,
    username_field: credentialField.default('username'),
    password_field: credentialField.default('password'),
  }),
);

/** `query`: `?<param>=<field>` appended to the upstream URL; field defaults to `value`. */
registerMechanicSchema(
  'query',
  z.strictObject({
    credential: credentialRef,
    param: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, 'must be a query parameter name'),
    field: credentialField.default('value'),
  }),
);
