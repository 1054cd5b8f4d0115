// RFC 9421 §2: component identifiers and the derivation of their values (derived
// components and HTTP fields with the sf, key, bs and req parameters).

import { utf8 } from '../encoding.js';
import { NexusError, type ErrorCode } from '../errors.js';
import {
  parseDictionary,
  parseItem,
  parseList,
  serializeByteSequence,
  serializeDictionary,
  serializeItem,
  serializeList,
  serializeMember,
  type BareItem,
  type SfItem,
  type SfParameters,
} from '../structured-fields.js';
import { fieldLines, splitUrl, trimOWS, type HttpMessage } from './message.js';

/** A component identifier: a lower-case field name or `@derived` name, with parameters. */
export interface ComponentId {
  name: string;
  params: SfParameters;
}

/** Component input accepted by the signer: `'@method'`, `'content-digest'`, or a full id. */
export type ComponentInput = string | { name: string; params?: Record<string, BareItem> };

/** The structured type of a field, for the `sf` and `key` parameters. */
export type StructuredFieldType = 'dictionary' | 'list' | 'item';

/** Known structured fields (extend per call with `sfTypes`). */
export const STRUCTURED_FIELD_TYPES: Readonly<Record<string, StructuredFieldType>> = Object.freeze({
  'content-digest': 'dictionary',
  'repr-digest': 'dictionary',
  'want-content-digest': 'dictionary',
  'want-repr-digest': 'dictionary',
  signature: 'dictionary',
  'signature-input': 'dictionary',
  'accept-signature': 'dictionary',
  priority: 'dictionary',
  'example-dict': 'dictionary',
  'cache-status': 'list',
  'proxy-status': 'list',
  'nexus-intent': 'item',
});

/** Context for deriving component values. */
export interface DeriveContext {
  message: HttpMessage;
  /** The request a response answers (for `;req` components). */
  request?: HttpMessage;
  sfTypes?: Readonly<Record<string, StructuredFieldType>>;
  /** Code of the NexusError thrown when a component cannot be derived. */
  code?: ErrorCode;
}

const DERIVED = new Set([
  '@method',
  '@target-uri',
  '@authority',
  '@scheme',
  '@request-target',
  '@path',
  '@query',
  '@query-param',
  '@status',
]);
const FIELD_NAME_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/** Normalises signer input into a component identifier. */
export function toComponentId(input: ComponentInput): ComponentId {
  if (typeof input === 'string') return { name: input, params: new Map() };
  return { name: input.name, params: new Map(Object.entries(input.params ?? {})) };
}

/** The identifier as an sf item (`"@query-param";name="Pet"`). */
export function componentItem(c: ComponentId): SfItem {
  return { kind: 'item', value: c.name, params: c.params };
}

/** Serializes a component identifier as it appears in a signature base. */
export function serializeComponentId(c: ComponentId): string {
  return serializeItem(componentItem(c));
}

/** Percent-encodes with the application/x-www-form-urlencoded set, spaces as %20. */
function formEncode(text: string): string {
  let out = '';
  for (const b of utf8(text)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9*\-._]/.test(c)) out += c;
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Derives the value of one component. Throws a NexusError (`ctx.code`, default
 * `signature_invalid`) when the component is malformed or absent from the message.
 */
export function deriveComponent(c: ComponentId, ctx: DeriveContext): string {
  const code = ctx.code ?? 'signature_invalid';
  const fail = (): never => {
    throw new NexusError(code);
  };
  for (const [k, v] of c.params) {
    if (k === 'key' || k === 'name') {
      if (typeof v !== 'string') fail();
    } else if (k === 'sf' || k === 'bs' || k === 'req') {
      if (v !== true) fail();
    } else fail(); // `tr` (trailers) and unknown parameters are not supported
  }
  let message = ctx.message;
  if (c.params.has('req')) {
    if (!ctx.request || ctx.message.status === undefined) fail();
    message = ctx.request!;
  }

  if (c.name.startsWith('@')) {
    if (!DERIVED.has(c.name)) fail();
    if (c.params.has('sf') || c.params.has('key') || c.params.has('bs')) fail();
    if (c.params.has('name') !== (c.name === '@query-param')) fail();
    if (c.name === '@status') {
      if (message.status === undefined || c.params.has('req')) fail();
      const s = message.status!;
      if (!Number.isInteger(s) || s < 100 || s > 999) fail();
      return String(s);
    }
    // Every other derived component belongs to a request.
    if (message.status !== undefined) fail();
    if (c.name === '@method') {
      if (!message.method) fail();
      return message.method!;
    }
    const url = message.url !== undefined ? splitUrl(message.url) : undefined;
    if (!url) return fail();
    switch (c.name) {
      case '@target-uri':
        return message.url!.replace(/#.*$/, '');
      case '@authority':
        return url.authority;
      case '@scheme':
        return url.scheme;
      case '@request-target':
        return url.query === undefined ? url.path : `${url.path}?${url.query}`;
      case '@path':
        return url.path;
      case '@query':
        return `?${url.query ?? ''}`;
      default: {
        const wanted = c.params.get('name') as string;
        const matches: string[] = [];
        for (const [n, v] of new URLSearchParams(url.query ?? '')) {
          if (formEncode(n) === wanted) matches.push(v);
        }
        // Absent, or repeated (RFC 9421 §2.2.8): cannot be signed as one value.
        if (matches.length !== 1) fail();
        return formEncode(matches[0]!);
      }
    }
  }

  if (!FIELD_NAME_RE.test(c.name) || c.params.has('name')) fail();
  const lines = fieldLines(message.headers, c.name);
  if (!lines) return fail();
  const sf = c.params.has('sf');
  const key = c.params.get('key');
  const bs = c.params.has('bs');
  if ((bs && (sf || key !== undefined)) || (sf && key !== undefined)) fail();
  if (bs) return lines.map((l) => serializeByteSequence(utf8(trimOWS(l)))).join(', ');
  const combined = lines.map(trimOWS).join(', ');
  if (key !== undefined) {
    const member = parseDictionary(combined, { code }).get(key as string);
    if (!member) return fail();
    return serializeMember(member);
  }
  if (sf) {
    const type = ctx.sfTypes?.[c.name] ?? STRUCTURED_FIELD_TYPES[c.name];
    if (type === 'dictionary') return serializeDictionary(parseDictionary(combined, { code }));
    if (type === 'list') return serializeList(parseList(combined, { code }));
    if (type === 'item') return serializeItem(parseItem(combined, { code }));
    return fail();
  }
  return combined;
}
