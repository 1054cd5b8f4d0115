/**
 * Issue 6 fuzzing: signature verification under mutation. A request is signed once per
 * agent key type; each case mutates it (a character of any signed header, the lease, the
 * method, the target, the signature bytes, the body; a field dropped, repeated or added)
 * and runs the proxy's verification (lease, signature, digest). Property: no mutated
 * request is accepted unless what the signature covers is unchanged, i.e. the verifier
 * rebuilt the very same signature base and the body is the signed one; and nothing but
 * a NexusError is ever thrown.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  generateAgentKey,
  isNexusError,
  signLease,
  signRequest,
  verifyRequestBody,
  verifyRequestSignature,
  type AgentKeyPair,
} from '@nexus-proxy/protocol';
import { params, TIMEOUT } from './runs.js';

const PROXY = 'https://nexus.example';
const NOW = 1_785_000_000_000;
const URL_ = `${PROXY}/github/repos/acme/app/issues?state=open&x=%2F`;
const BODY = Buffer.from('{"title":"bug","body":"steps"}');
const authority = generateKeyPairSync('ed25519');

interface Signed {
  key: AgentKeyPair;
  headers: Record<string, string>;
  base: string;
}

async function signedRequest(alg: 'ed25519' | 'ecdsa-p256'): Promise<Signed> {
  const key = await generateAgentKey(alg);
  const now = NOW / 1000;
  const lease = await signLease(
    {
      iss: PROXY,
      aud: PROXY,
      sub: 'nexus://nexus.example/agent/bot',
      iat: now,
      nbf: now,
      exp: now + 900,
      jti: 'abcdefghijklmnopqrstuvwx',
      scope: 'reader',
      cnf: { jwk: key.publicJwk },
    },
    authority.privateKey,
    { alg: 'EdDSA', kid: 'k1' },
  );
  const added = await signRequest({
    method: 'POST',
    url: URL_,
    headers: { 'content-type': 'application/json' },
    body: BODY,
    lease,
    key: key.privateKey,
    intent: 'file a bug',
    now: () => NOW,
  });
  const headers = { 'content-type': 'application/json', ...added };
  const v = await verify('POST', URL_, headers, BODY);
  if (v === undefined) throw new Error('the unmutated request must verify');
  return { key, headers, base: v };
}

/** The proxy's checks; returns the rebuilt signature base, or undefined when refused. */
async function verify(
  method: string,
  url: string,
  headers: Record<string, string | string[]>,
  body: Buffer,
): Promise<string | undefined> {
  try {
    const v = await verifyRequestSignature({
      method,
      url,
      headers,
      issuer: PROXY,
      audience: PROXY,
      getAuthorityKey: async (h) => (h.kid === 'k1' ? authority.publicKey : undefined),
      now: () => NOW,
    });
    await verifyRequestBody(v, headers, body);
    return v.signatureBase;
  } catch (err) {
    if (!isNexusError(err)) throw err;
    return undefined;
  }
}

const SIGNED_FIELDS = [
  'workload-identity-token',
  'nexus-intent',
  'content-type',
  'content-digest',
  'signature-input',
  'signature',
] as const;

type Mutation =
  | {
      kind: 'char';
      field: (typeof SIGNED_FIELDS)[number];
      at: number;
      ch: string;
      op: 'replace' | 'insert' | 'delete';
    }
  | { kind: 'method'; method: string }
  | { kind: 'url'; at: number; ch: string }
  | { kind: 'sigbit'; at: number; bit: number }
  | { kind: 'body'; at: number; byte: number }
  | { kind: 'drop'; field: (typeof SIGNED_FIELDS)[number] }
  | { kind: 'repeat'; field: (typeof SIGNED_FIELDS)[number]; value: string };

const printable = fc.constantFrom(
  ...' !"#$%&\'()*+,-./0123456789:;<=>?@AZaz[\\]^_`{|}~\t'.split(''),
);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('char' as const),
    field: fc.constantFrom(...SIGNED_FIELDS),
    at: fc.nat(),
    ch: printable,
    op: fc.constantFrom('replace' as const, 'insert' as const, 'delete' as const),
  }),
  fc.record({
    kind: fc.constant('method' as const),
    method: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'post', 'POST ', 'HEAD'),
  }),
  fc.record({ kind: fc.constant('url' as const), at: fc.nat(), ch: printable }),
  fc.record({
    kind: fc.constant('sigbit' as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({
    kind: fc.constant('body' as const),
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant('drop' as const), field: fc.constantFrom(...SIGNED_FIELDS) }),
  fc.record({
    kind: fc.constant('repeat' as const),
    field: fc.constantFrom(...SIGNED_FIELDS),
    value: fc.string({ maxLength: 20 }),
  }),
);

function apply(
  s: Signed,
  m: Mutation,
): { method: string; url: string; headers: Record<string, string | string[]>; body: Buffer } {
  const headers: Record<string, string | string[]> = { ...s.headers };
  let method = 'POST';
  let url = URL_;
  let body = BODY;
  switch (m.kind) {
    case 'char': {
      const v = s.headers[m.field]!;
      const at = m.at % (v.length + 1);
      headers[m.field] =
        m.op === 'insert'
          ? v.slice(0, at) + m.ch + v.slice(at)
          : m.op === 'delete'
            ? v.slice(0, at) + v.slice(at + 1)
            : v.slice(0, at) + m.ch + v.slice(at + 1);
      break;
    }
    case 'method':
      method = m.method;
      break;
    case 'url': {
      // Only the part after the authority: the verifier builds the authority itself.
      const start = PROXY.length;
      const at = start + (m.at % (url.length - start));
      url = url.slice(0, at) + m.ch + url.slice(at + 1);
      break;
    }
    case 'sigbit': {
      const raw = Buffer.from(/:(.*):/.exec(s.headers.signature!)![1]!, 'base64');
      const at = m.at % raw.length;
      raw[at] = raw[at]! ^ (1 << m.bit);
      headers.signature = `wimse=:${raw.toString('base64')}:`;
      break;
    }
    case 'body': {
      body = Buffer.from(BODY);
      const at = m.at % body.length;
      body[at] = body[at] === m.byte ? m.byte ^ 1 : m.byte;
      break;
    }
    case 'drop':
      delete headers[m.field];
      break;
    case 'repeat':
      headers[m.field] = [s.headers[m.field]!, m.value];
      break;
  }
  return { method, url, headers, body };
}

describe('fuzz: no mutated signature is accepted', () => {
  const signed: Signed[] = [];
  beforeAll(async () => {
    signed.push(await signedRequest('ed25519'), await signedRequest('ecdsa-p256'));
  });

  for (const [i, name] of ['ed25519', 'ecdsa-p256-sha256'].entries()) {
    it(
      `${name}: a mutation is refused unless the signed content is unchanged`,
      async () => {
        await fc.assert(
          fc.asyncProperty(mutation, async (m) => {
            const s = signed[i]!;
            const r = apply(s, m);
            const base = await verify(r.method, r.url, r.headers, r.body);
            if (base !== undefined) {
              // Accepted: only a semantically neutral change (e.g. whitespace the field
              // syntax ignores) may pass, and then the verifier saw the signed base.
              expect(base).toBe(s.base);
              expect(r.body.equals(BODY)).toBe(true);
              expect(r.method).toBe('POST');
              expect(r.url).toBe(URL_);
            }
          }),
          params(400),
        );
      },
      TIMEOUT,
    );
  }

  it(
    'random bytes as the signature never verify',
    async () => {
      const s = await signedRequest('ed25519');
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 80 }), async (bytes) => {
          const headers = {
            ...s.headers,
            signature: `wimse=:${Buffer.from(bytes).toString('base64')}:`,
          };
          expect(await verify('POST', URL_, headers, BODY)).toBeUndefined();
        }),
        params(300),
      );
    },
    TIMEOUT,
  );
});
