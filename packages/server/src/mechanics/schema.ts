/**
 * Zod building blocks shared by the mechanic option schemas.
 */
import { z } from 'zod';

/** A vault credential name (the `credential` key of every `auth` block). */
export const credentialName = z.string().min(1).max(128);

/** A credential field name. */
export const fieldName = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be a field name (letters, digits, _ . -)');

/** An HTTP header name (RFC 9110 token), normalised to lower case. */
export const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'must be an HTTP header name')
  .transform((name) => name.toLowerCase())
  .refine((name) => !RESERVED_HEADERS.has(name), 'this header cannot be injected');

/**
 * Headers a mechanic MUST NOT set: framing and routing belong to the proxy, and the Nexus
 * request headers belong to the agent-to-proxy hop.
 */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'workload-identity-token',
  'nexus-intent',
  'signature',
  'signature-input',
  'content-digest',
]);
