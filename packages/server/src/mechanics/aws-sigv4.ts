/**
 * `aws_sigv4`: AWS Signature Version 4, header signing.
 *
 * Why our own implementation and not an SDK signer: this file holds the signing key
 * derivation and everything the signature covers, and it is the one place an AWS secret
 * key is used. It is kept small (pure functions over strings and bytes, node:crypto only,
 * no dependency tree) so it can be audited in one sitting and checked byte for byte against
 * the 38-case aws-c-auth test suite in `vectors/sigv4/` (see `aws-sigv4.test.ts`).
 *
 * Pure API: `canonicalRequest` -> `stringToSign` -> `signingKey` -> signature, with
 * `signRequest` composing them. The mechanic (`awsSigV4Mechanic`) adapts an
 * `OutboundRequest` to that API.
 */
import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import { applied, assertHeaderSafe, optionalField, requireField, SecretSet } from './credential.js';
import type { Mechanic, MechanicDefinition, OutboundRequest } from './mechanic.js';
import { credentialName } from './schema.js';

/** The algorithm identifier in the string to sign and the Authorization header. */
export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
/** Payload hash used when the body is deliberately not signed. */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/** A request as SigV4 sees it. */
export interface SigV4Request {
  readonly method: string;
  /** The path as it appears on the request line (raw or percent-encoded), starting with `/`. */
  readonly path: string;
  /** The raw query string, without `?` (may be empty). */
  readonly query: string;
  /**
   * The headers to sign, in message order; names in any case; duplicates allowed (their
   * values are joined with `,`). Every header listed here is signed.
   */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
}

/** How the canonical request is built. */
export interface CanonicalOptions {
  /** Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`. */
  readonly payloadHash: string;
  /** Remove `.`/`..` and empty segments from the path (every service but S3). Default true. */
  readonly normalizePath?: boolean;
  /**
   * URI-encode the path as given (so an already encoded path ends up encoded twice, as every
   * service but S3 expects). When false (S3) each segment is decoded first, then encoded
   * once. Default true.
   */
  readonly encodePathTwice?: boolean;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** RFC 3986 encoding as SigV4 defines it: every byte but the unreserved set, upper-case hex. */
export function uriEncode(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out +=
      byte < 0x80 && UNRESERVED.test(ch)
        ? ch
        : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Percent-decoding that leaves malformed escapes as they are (never throws). */
function percentDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

function canonicalPath(path: string, normalize: boolean, encodeTwice: boolean): string {
  let p = path === '' ? '/' : path;
  if (normalize) {
    const out: string[] = [];
    for (const segment of p.split('/')) {
      if (segment === '' || segment === '.') continue;
      if (segment === '..') out.pop();
      else out.push(segment);
    }
    const trailing = p.endsWith('/') && out.length > 0;
    p = `/${out.join('/')}${trailing ? '/' : ''}`;
  }
  return p
    .split('/')
    .map((segment) => uriEncode(encodeTwice ? segment : percentDecode(segment)))
    .join('/');
}

function canonicalQuery(query: string): string {
  const pairs: Array<[string, string]> = [];
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? '' : part.slice(eq + 1);
    pairs.push([uriEncode(percentDecode(key)), uriEncode(percentDecode(value))]);
  }
  pairs.sort(([ka, va], [kb, vb]) => (ka < kb ? -1 : ka > kb ? 1 : va < vb ? -1 : va > vb ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

/** Header value canonical form: unfolded, trimmed, inner runs of whitespace collapsed. */
function canonicalHeaderValue(value: string): string {
  return value
    .replace(/\r?\n[ \t]+/g, ' ')
    .trim()
    .replace(/[ \t]+/g, ' ');
}

function canonicalHeaders(headers: SigV4Request['headers']): {
  block: string;
  signedHeaders: string;
} {
  const merged = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    const list = merged.get(key) ?? [];
    list.push(canonicalHeaderValue(value));
    merged.set(key, list);
  }
  const names = [...merged.keys()].sort();
  return {
    block: names.map((n) => `${n}:${(merged.get(n) ?? []).join(',')}\n`).join(''),
    signedHeaders: names.join(';'),
  };
}

/** The `SignedHeaders` value for a header list: lower-cased, unique, sorted, `;`-joined. */
export function signedHeaderNames(headers: SigV4Request['headers']): string {
  return canonicalHeaders(headers).signedHeaders;
}

/**
 * The SigV4 canonical request:
 * method, canonical URI, canonical query, canonical headers, signed headers, payload hash.
 *
 * @example canonicalRequest({ method: 'GET', path: '/', query: '', headers: [['host', 'example.com'], ['x-amz-date', '20150830T123600Z']] }, { payloadHash: sha256Hex('') })
 */
export function canonicalRequest(request: SigV4Request, options: CanonicalOptions): string {
  const { block, signedHeaders } = canonicalHeaders(request.headers);
  return [
    request.method.toUpperCase(),
    canonicalPath(request.path, options.normalizePath ?? true, options.encodePathTwice ?? true),
    canonicalQuery(request.query),
    block,
    signedHeaders,
    options.payloadHash,
  ].join('\n');
}

/** `YYYYMMDD/region/service/aws4_request`. */
export function credentialScope(amzDate: string, region: string, service: string): string {
  return `${amzDate.slice(0, 8)}/${region}/${service}/aws4_request`;
}

/** The string to sign: algorithm, `X-Amz-Date`, scope, hex SHA-256 of the canonical request. */
export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(canonical)].join('\n');
}

/**
 * The derived signing key: HMAC chain over date (`YYYYMMDD`), region, service, `aws4_request`
 * keyed by `AWS4` + secret. MUST be treated as a secret (it signs for the whole day).
 */
export function signingKey(
  secretAccessKey: string,
  date: string,
  region: string,
  service: string,
): Buffer {
  const kDate = hmac(Buffer.from(`AWS4${secretAccessKey}`, 'utf8'), date.slice(0, 8));
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  return hmac(kService, 'aws4_request');
}

/** Hex SHA-256 of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Uint8Array, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** `20150830T123600Z` from milliseconds since the epoch. */
export function amzDate(nowMs: number): string {
  return new Date(nowMs)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

/** Everything `signRequest` needs besides the request. */
export interface SignParams {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
  readonly region: string;
  readonly service: string;
  /** Signing time, milliseconds since the epoch. */
  readonly now: number;
  /** Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`. */
  readonly payloadHash: string;
  /** Add (and sign) `X-Amz-Content-Sha256: <payloadHash>`. */
  readonly contentSha256Header: boolean;
  readonly normalizePath?: boolean;
  readonly encodePathTwice?: boolean;
  /** Sign `X-Amz-Security-Token` (default true); false adds it after signing (some STS flows). */
  readonly signSessionToken?: boolean;
}

/** The outcome of `signRequest`: headers to add to the request, and the intermediate values. */
export interface SignedRequest {
  /** Headers to set on the request (lower-case names), including `authorization`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly canonicalRequest: string;
  readonly stringToSign: string;
  /** Hex signature (not a secret). */
  readonly signature: string;
  readonly signedHeaders: string;
  /** The derived signing key: a secret. */
  readonly signingKey: Buffer;
}

/**
 * Signs a request with SigV4 header signing. `request.headers` MUST already contain `host`
 * and every other header to sign; the `x-amz-*` headers this adds are signed too.
 */
export function signRequest(request: SigV4Request, params: SignParams): SignedRequest {
  const date = amzDate(params.now);
  const added: Record<string, string> = { 'x-amz-date': date };
  if (params.contentSha256Header) added['x-amz-content-sha256'] = params.payloadHash;
  const signToken = params.signSessionToken ?? true;
  if (params.sessionToken !== undefined && signToken) {
    added['x-amz-security-token'] = params.sessionToken;
  }
  const addedNames = new Set(Object.keys(added));
  const headers = [
    ...request.headers.filter(([name]) => !addedNames.has(name.toLowerCase())),
    ...Object.entries(added),
  ];
  const canonical = canonicalRequest(
    { ...request, headers },
    {
      payloadHash: params.payloadHash,
      normalizePath: params.normalizePath ?? true,
      encodePathTwice: params.encodePathTwice ?? true,
    },
  );
  const scope = credentialScope(date, params.region, params.service);
  const toSign = stringToSign(date, scope, canonical);
  const key = signingKey(params.secretAccessKey, date, params.region, params.service);
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  const signedHeaders = signedHeaderNames(headers);
  const out: Record<string, string> = { ...added };
  if (params.sessionToken !== undefined && !signToken) {
    out['x-amz-security-token'] = params.sessionToken;
  }
  out['authorization'] =
    `${SIGV4_ALGORITHM} Credential=${params.accessKeyId}/${scope}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return {
    headers: out,
    canonicalRequest: canonical,
    stringToSign: toSign,
    signature,
    signedHeaders,
    signingKey: key,
  };
}

// ---------------------------------------------------------------------------------------
// The mechanic

const awsName = z.string().regex(/^[a-z0-9-]{1,64}$/, 'must be lower-case letters, digits and -');

/** Options of `auth: { type: aws_sigv4, ... }`. */
export const awsSigV4OptionsSchema = z.strictObject({
  /** Fields `access_key_id`, `secret_access_key`, optional `session_token`. */
  credential: credentialName,
  /** e.g. `us-east-1`. */
  region: awsName,
  /** The signing name, e.g. `s3`, `sts`, `execute-api`, `bedrock`. */
  service: awsName,
  /** Hash and sign the body (default). false sends `X-Amz-Content-Sha256: UNSIGNED-PAYLOAD`. */
  sign_body: z.boolean().default(true),
  /** Normalise the canonical path. Default true, except for S3, which never normalises. */
  normalize_path: z.boolean().optional(),
});

/** Options of the `aws_sigv4` mechanic. */
export type AwsSigV4Options = z.infer<typeof awsSigV4OptionsSchema>;

/** Services with S3 semantics: no double path encoding, no normalisation, content hash header. */
const S3_SERVICES: ReadonlySet<string> = new Set([
  's3',
  's3-object-lambda',
  's3-outposts',
  's3express',
]);

/**
 * Headers never signed: hop-by-hop or rewritten in transit (signing them would break the
 * signature), plus `authorization` itself and `content-length`, which the HTTP client sets.
 */
const UNSIGNABLE: ReadonlySet<string> = new Set([
  'authorization',
  'content-length',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'user-agent',
  'x-amzn-trace-id',
  'via',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
]);

/** The SigV4 view of an outbound request: `host` from the URL, then the signable headers. */
export function sigV4RequestFrom(request: OutboundRequest): SigV4Request {
  const headers: Array<[string, string]> = [['host', request.url.host]];
  for (const [name, value] of Object.entries(request.headers)) {
    const lower = name.toLowerCase();
    if (lower === 'host' || UNSIGNABLE.has(lower)) continue;
    headers.push([lower, value]);
  }
  return {
    method: request.method,
    path: request.url.pathname,
    query: request.url.search.replace(/^\?/, ''),
    headers,
  };
}

/** The `aws_sigv4` mechanic. */
export const awsSigV4Mechanic: MechanicDefinition<AwsSigV4Options> = {
  type: 'aws_sigv4',
  optionsSchema: awsSigV4OptionsSchema,
  create(_service, options): Mechanic {
    const s3 = S3_SERVICES.has(options.service);
    const normalizePath = options.normalize_path ?? !s3;
    return {
      type: 'aws_sigv4',
      injectedHeaders: [
        'authorization',
        'x-amz-date',
        'x-amz-content-sha256',
        'x-amz-security-token',
      ],
      injectedQueryParams: [
        'X-Amz-Algorithm',
        'X-Amz-Credential',
        'X-Amz-Date',
        'X-Amz-Expires',
        'X-Amz-SignedHeaders',
        'X-Amz-Signature',
        'X-Amz-Security-Token',
      ],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        const accessKeyId = requireField(credential, 'access_key_id');
        const secretAccessKey = requireField(credential, 'secret_access_key');
        const sessionToken = optionalField(credential, 'session_token') || undefined;
        assertHeaderSafe(credential, `${accessKeyId}${sessionToken ?? ''}`);
        for (const name of [
          'authorization',
          'x-amz-date',
          'x-amz-content-sha256',
          'x-amz-security-token',
        ]) {
          delete request.headers[name];
        }
        const payloadHash = options.sign_body
          ? sha256Hex(request.body ?? new Uint8Array())
          : UNSIGNED_PAYLOAD;
        const signed = signRequest(sigV4RequestFrom(request), {
          accessKeyId,
          secretAccessKey,
          sessionToken,
          region: options.region,
          service: options.service,
          now: ctx.now,
          payloadHash,
          contentSha256Header: s3 || !options.sign_body,
          normalizePath,
          encodePathTwice: !s3,
        });
        Object.assign(request.headers, signed.headers);
        // The secret access key and the signing key derived from it never travel.
        const secrets = new SecretSet().add(accessKeyId, sessionToken);
        return applied(credential, secrets);
      },
    };
  },
};
