/**
 * Shared helpers for reading credential fields, rendering `{{name}}` templates and
 * collecting the secret values a mechanic puts on the wire.
 */
import { credentialUnavailable } from './errors.js';
import type { AppliedAuth, ResolvedCredential } from './mechanic.js';

/**
 * Returns a credential field. A missing field (or an empty one unless `allowEmpty`) raises
 * `credential_unavailable`; the message names the credential and field, never a value.
 */
export function requireField(
  credential: ResolvedCredential,
  field: string,
  options: { allowEmpty?: boolean } = {},
): string {
  const value = Object.hasOwn(credential.fields, field) ? credential.fields[field] : undefined;
  if (value === undefined) {
    throw credentialUnavailable(`credential "${credential.name}" has no field "${field}"`);
  }
  if (value === '' && options.allowEmpty !== true) {
    throw credentialUnavailable(`credential "${credential.name}" field "${field}" is empty`);
  }
  return value;
}

/** Returns a credential field when present, else undefined. */
export function optionalField(credential: ResolvedCredential, field: string): string | undefined {
  return Object.hasOwn(credential.fields, field) ? credential.fields[field] : undefined;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

/** The placeholder names a template uses, in order of first appearance. */
export function templateNames(template: string): string[] {
  const names: string[] = [];
  for (const match of template.matchAll(PLACEHOLDER)) {
    const name = match[1] as string;
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

/**
 * Replaces every `{{name}}` with `lookup(name)`. Single pass: a substituted value is never
 * scanned again, so a credential containing `{{...}}` cannot pull in another field.
 */
export function renderTemplate(template: string, lookup: (name: string) => string): string {
  return template.replace(PLACEHOLDER, (_whole, name: string) => lookup(name));
}

/**
 * Collects secret values for `AppliedAuth.secrets`: deduplicated, empty strings dropped
 * (an empty pattern would make the scrubber match everywhere).
 */
export class SecretSet {
  readonly #values = new Set<string>();

  add(...values: readonly (string | undefined)[]): this {
    for (const value of values) if (value !== undefined && value !== '') this.#values.add(value);
    return this;
  }

  toArray(): readonly string[] {
    return [...this.#values];
  }
}

/** Builds the `AppliedAuth` result for a credential. */
export function applied(credential: ResolvedCredential, secrets: SecretSet): AppliedAuth {
  return {
    credential: { name: credential.name, version: credential.version },
    secrets: secrets.toArray(),
  };
}

/**
 * A header value built from a credential MUST NOT carry CR, LF or NUL (header injection);
 * such a credential is unusable, and the message does not echo it.
 */
export function assertHeaderSafe(credential: ResolvedCredential, value: string): string {
  if (/[\r\n\0]/.test(value)) {
    throw credentialUnavailable(
      `credential "${credential.name}" yields a header value with control characters`,
    );
  }
  return value;
}
