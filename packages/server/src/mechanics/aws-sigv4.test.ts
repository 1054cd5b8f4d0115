/**
 * AWS SigV4: the 38-case aws-c-auth suite (header signing, byte-exact canonical request,
 * string to sign and signature), the mechanic over the real interface, and a signature
 * checked by an independent verifier on a request received over a loopback socket.
 */
import { createHash, createHmac } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  amzDate,
  awsSigV4Mechanic,
  canonicalRequest,
  sha256Hex,
  signingKey,
  signRequest,
  stringToSign,
  UNSIGNED_PAYLOAD,
  uriEncode,
  type SigV4Request,
} from './aws-sigv4.js';
import type { OutboundRequest } from './mechanic.js';
import { fakeContext, outbound } from './test/fake-context.js';

const VECTORS = new URL('../../../../vectors/sigv4/', import.meta.url);

interface VectorContext {
  credentials: { access_key_id: string; secret_access_key: string; token?: string };
  region: string;
  service: string;
  timestamp: string;
  normalize: boolean;
  sign_body: boolean;
  omit_session_token?: boolean;
}

/** Parses request.txt as raw bytes: request line, headers (with obs-fold), body. */
function parseRawRequest(raw: string): { request: SigV4Request; body: string } {
  const lines = raw.split('\n');
  const first = lines.shift() ?? '';
  const method = first.slice(0, first.indexOf(' '));
  // The target may contain spaces (get-space-*): it ends before the last ` HTTP/1.1`.
  const target = first.slice(first.indexOf(' ') + 1, first.lastIndexOf(' '));
  const headers: Array<[string, string]> = [];
  let i = 0;
  for (; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '') break;
    if (/^[ \t]/.test(line) && headers.length > 0) {
      const last = headers[headers.length - 1] as [string, string];
      last[1] += `\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    headers.push([line.slice(0, colon), line.slice(colon + 1)]);
  }
  const body = lines.slice(i + 1).join('\n');
  const q = target.indexOf('?');
  return {
    request: {
      method,
      path: q === -1 ? target : target.slice(0, q),
      query: q === -1 ? '' : target.slice(q + 1),
      headers,
    },
    body,
  };
}

const read = (dir: string, file: string): string =>
  readFileSync(new URL(`${dir}/${file}`, VECTORS), 'utf8');

const cases = readdirSync(VECTORS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

describe('aws-c-auth SigV4 suite, header signing', () => {
  it('has all 38 cases', () => {
    expect(cases).toHaveLength(38);
  });

  it.each(cases)('%s', (name) => {
    const context = JSON.parse(read(name, 'context.json')) as VectorContext;
    const { request, body } = parseRawRequest(read(name, 'request.txt'));
    // The suite's payload hash is always the body hash; `sign_body` only adds the header.
    const signed = signRequest(request, {
      accessKeyId: context.credentials.access_key_id,
      secretAccessKey: context.credentials.secret_access_key,
      sessionToken: context.credentials.token,
      region: context.region,
      service: context.service,
      now: Date.parse(context.timestamp),
      payloadHash: sha256Hex(body),
      contentSha256Header: context.sign_body,
      normalizePath: context.normalize,
      encodePathTwice: true,
      signSessionToken: context.omit_session_token !== true,
    });
    expect(signed.canonicalRequest).toBe(read(name, 'header-canonical-request.txt'));
    expect(signed.stringToSign).toBe(read(name, 'header-string-to-sign.txt'));
    expect(signed.signature).toBe(read(name, 'header-signature.txt').trim());
    // The Authorization header of the expected signed request, byte for byte.
    const expectedAuth = /^Authorization:(.*)$/m.exec(read(name, 'header-signed-request.txt'));
    expect(signed.headers['authorization']).toBe(expectedAuth?.[1]);
  });
});

describe('SigV4 pure functions', () => {
  it('derives the documented signing key (AWS docs example)', () => {
    // From the AWS General Reference "Examples of how to derive a signing key".
    expect(
      signingKey(
        'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
        '20120215',
        'us-east-1',
        'iam',
      ).toString('hex'),
    ).toBe('f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d');
  });

  it('formats X-Amz-Date', () => {
    expect(amzDate(Date.parse('2015-08-30T12:36:00.123Z'))).toBe('20150830T123600Z');
  });

  it('encodes everything but the unreserved set', () => {
    expect(uriEncode("a b/!*'()ሴ~")).toBe('a%20b%2F%21%2A%27%28%29%E1%88%B4~');
  });

  it('encodes an already encoded path twice, or once for S3', () => {
    const req = { method: 'GET', path: '/a%20b/c', query: '', headers: [['host', 'h']] as const };
    const twice = canonicalRequest(req, { payloadHash: 'x' }).split('\n')[1];
    const once = canonicalRequest(req, { payloadHash: 'x', encodePathTwice: false }).split('\n')[1];
    expect(twice).toBe('/a%2520b/c');
    expect(once).toBe('/a%20b/c');
  });

  it('builds the string to sign from the canonical request hash', () => {
    expect(stringToSign('20150830T123600Z', 'scope', 'abc')).toBe(
      `AWS4-HMAC-SHA256\n20150830T123600Z\nscope\n${sha256Hex('abc')}`,
    );
  });
});

const CRED = {
  name: 'aws',
  version: 3,
  fields: {
    access_key_id: 'AKIDEXAMPLE',
    secret_access_key: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    session_token: 'FQoGZXIvYXdzEXAMPLETOKEN',
  },
};
const NOW = Date.parse('2015-08-30T12:36:00Z');

function mechanic(options: Record<string, unknown>) {
  const parsed = awsSigV4Mechanic.optionsSchema.parse({ credential: 'aws', ...options });
  return awsSigV4Mechanic.create('svc', parsed, { clock: () => NOW });
}

describe('aws_sigv4 mechanic', () => {
  it('signs the body and sets the documented headers', async () => {
    const req = outbound('POST', 'https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'agent' },
      body: 'Version=2011-06-15',
    });
    const result = await mechanic({ region: 'us-east-1', service: 'sts' }).apply(
      req,
      fakeContext(CRED, { now: NOW }),
    );
    expect(req.headers['x-amz-date']).toBe('20150830T123600Z');
    expect(req.headers['x-amz-security-token']).toBe(CRED.fields.session_token);
    expect(req.headers['x-amz-content-sha256']).toBeUndefined();
    expect(req.headers['authorization']).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20150830\/us-east-1\/sts\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
    );
    expect(result.credential).toEqual({ name: 'aws', version: 3 });
    // What travels is a secret; the secret key and the signing key never travel, so they
    // are in no response matcher (issue 10).
    expect([...result.secrets].sort()).toEqual(
      [CRED.fields.access_key_id, CRED.fields.session_token].sort(),
    );
    const key = signingKey(CRED.fields.secret_access_key, '20150830', 'us-east-1', 'sts');
    expect(result.secrets).not.toContain(key.toString('hex'));
  });

  it('sign_body false sends UNSIGNED-PAYLOAD, and S3 always sends the content hash', async () => {
    const unsigned = outbound('PUT', 'https://example.amazonaws.com/x', { body: 'data' });
    await mechanic({ region: 'us-east-1', service: 'execute-api', sign_body: false }).apply(
      unsigned,
      fakeContext(CRED, { now: NOW }),
    );
    expect(unsigned.headers['x-amz-content-sha256']).toBe(UNSIGNED_PAYLOAD);

    const s3 = outbound('PUT', 'https://bucket.s3.amazonaws.com/a//b', { body: 'data' });
    await mechanic({ region: 'us-east-1', service: 's3' }).apply(
      s3,
      fakeContext(CRED, { now: NOW }),
    );
    expect(s3.headers['x-amz-content-sha256']).toBe(sha256Hex('data'));
  });

  it.each([
    ['access_key_id', { secret_access_key: 's' }],
    ['secret_access_key', { access_key_id: 'a' }],
  ])('missing %s -> credential_unavailable', async (_field, fields) => {
    const req = outbound('GET', 'https://example.amazonaws.com/');
    await expect(
      mechanic({ region: 'us-east-1', service: 'sts' }).apply(
        req,
        fakeContext({ name: 'aws', version: 1, fields }, { now: NOW }),
      ),
    ).rejects.toMatchObject({ code: 'credential_unavailable', status: 503 });
  });

  it('rejects unknown options', () => {
    expect(
      awsSigV4Mechanic.optionsSchema.safeParse({
        credential: 'aws',
        region: 'us-east-1',
        service: 'sts',
        sign: true,
      }).success,
    ).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------
// Independent verifier: a second, minimal SigV4 implementation written from the AWS
// documentation, working only from what a loopback server received on the socket.

function verifyFromWire(
  received: { method: string; target: string; rawHeaders: string[]; body: Buffer },
  secret: string,
): { ok: boolean; expected: string; got: string } {
  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
      headerValue(received.rawHeaders, 'authorization') ?? '',
    );
  if (!auth) return { ok: false, expected: '', got: '' };
  const [, , day, region, service, signedList, got] = auth as unknown as string[];
  const signed = (signedList as string).split(';');
  const [rawPath, rawQuery = ''] = received.target.split('?', 2) as [string, string?];
  const enc = (s: string): string =>
    encodeURIComponent(s).replace(
      /[!'()*]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
  // Every service but S3 encodes the wire path again; S3 decodes it and encodes it once.
  const path = (rawPath as string)
    .split('/')
    .map((seg) => (service === 's3' ? enc(decodeURIComponent(seg)) : enc(seg)))
    .join('/');
  const query = rawQuery
    .split('&')
    .filter(Boolean)
    .map((p) => {
      const [k, v = ''] = p.split(/=(.*)/s) as [string, string?];
      return [enc(decodeURIComponent(k)), enc(decodeURIComponent(v))];
    })
    .sort(([ka, va], [kb, vb]) => (ka !== kb ? (ka! < kb! ? -1 : 1) : va! < vb! ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = signed
    .map((n) => `${n}:${(headerValue(received.rawHeaders, n) ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const bodyHash = createHash('sha256').update(received.body).digest('hex');
  const payload = headerValue(received.rawHeaders, 'x-amz-content-sha256') ?? bodyHash;
  // As S3 does: a declared content hash MUST match the body received.
  if (payload !== 'UNSIGNED-PAYLOAD' && payload !== bodyHash) {
    return { ok: false, expected: '', got: '' };
  }
  const canonical = [received.method, path, query, canonicalHeaders, signedList, payload].join(
    '\n',
  );
  const date = headerValue(received.rawHeaders, 'x-amz-date') ?? '';
  const sts = [
    'AWS4-HMAC-SHA256',
    date,
    `${day}/${region}/${service}/aws4_request`,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  let key: Buffer = Buffer.from(`AWS4${secret}`);
  for (const part of [day, region, service, 'aws4_request']) {
    key = createHmac('sha256', key)
      .update(part as string)
      .digest();
  }
  const expected = createHmac('sha256', key).update(sts).digest('hex');
  return { ok: expected === got, expected, got: got as string };
}

function headerValue(rawHeaders: string[], name: string): string | undefined {
  const values: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === name) values.push(rawHeaders[i + 1] as string);
  }
  return values.length === 0 ? undefined : values.join(',');
}

describe('aws_sigv4 over a real loopback socket', () => {
  const received: Array<{ method: string; target: string; rawHeaders: string[]; body: Buffer }> =
    [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        method: req.method ?? '',
        target: req.url ?? '',
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
      });
      res.end('ok');
    });
  });
  let base = '';
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it.each([
    ['sts', true, 'POST', '/?Action=GetCallerIdentity&Version=2011-06-15', 'a=1&b=%20x'],
    ['execute-api', true, 'GET', '/prod/items%20list/%E1%88%B4?z=1&a=2&a=1&q=x%2Fy', undefined],
    ['execute-api', false, 'PUT', '/prod/items', '{"name":"widget"}'],
    ['s3', true, 'PUT', '/bucket/key%20with%20space.txt', 'file contents'],
  ] as const)('%s sign_body=%s %s %s verifies', async (service, signBody, method, target, body) => {
    const req: OutboundRequest = outbound(method, `${base}${target}`, {
      headers: {
        'content-type': 'application/json',
        'x-amz-target': 'Svc.Op',
        'x-custom': ' a   b ',
      },
      body,
    });
    const m = mechanic({ region: 'eu-west-1', service, sign_body: signBody });
    await m.apply(req, fakeContext(CRED, { now: Date.now() }));
    const res = await undiciRequest(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body === undefined ? undefined : Buffer.from(req.body),
    });
    await res.body.text();
    const got = received.at(-1);
    expect(got).toBeDefined();
    const verdict = verifyFromWire(got!, CRED.fields.secret_access_key);
    expect(verdict.ok).toBe(true);
    expect(verdict.expected).toBe(verdict.got);
    // A single changed byte in the body must break a signed-body signature.
    if (signBody && body !== undefined) {
      const tampered = { ...got!, body: Buffer.from(`${body}!`) };
      expect(verifyFromWire(tampered, CRED.fields.secret_access_key).ok).toBe(false);
    }
  });
});
