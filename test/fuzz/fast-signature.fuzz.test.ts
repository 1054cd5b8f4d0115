/**
 * Issue 14 step 2: the verification fast path for the profile's fixed header shape gives
 * the strict path's verdict. Random signed requests (method, path, query, intent, nonce,
 * body or none, nexus/1.1 or nexus/1, Ed25519 or P-256), then mutated (a character of a
 * signed field, a structured-field rewrite that keeps the meaning but not the canonical
 * text, a second member, a renamed label, a field dropped or repeated, the method or the
 * target changed, whitespace around a field); the request is verified with `fastPath: false` and with the default.
 * Property: both accept with the same result, or both refuse with the same error code.
 * A second property checks the parser alone: whenever the fast parser recognises a
 * Signature-Input / Signature pair, parseSignatures returns the same signature and the
 * fast base's `@signature-params` is the strict serialisation. A third does the same for
 * the simple Content-Digest reader against the dictionary parser.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  generateAgentKey,
  createContentDigest,
  isNexusError,
  parseDictionary,
  parseSignatures,
  serializeInnerList,
  signLease,
  signRequest,
  verifyContentDigest,
  verifyRequestSignature,
  type AgentKeyPair,
  type SignatureProfile,
} from '@nexus-proxy/protocol';
import { parseFastSignature } from '../../packages/protocol/src/fast-signature.js';
import { parseSimpleContentDigest } from '../../packages/protocol/src/digest.js';
import { params, TIMEOUT } from './runs.js';

const PROXY = 'https://nexus.example';
const NOW = 1_785_000_000_000;
const authority = generateKeyPairSync('ed25519');

interface Agent {
  key: AgentKeyPair;
  lease: string;
}
const agents: Agent[] = [];

beforeAll(async () => {
  for (const alg of ['ed25519', 'ecdsa-p256'] as const) {
    const key = await generateAgentKey(alg);
    const now = NOW / 1000;
    const lease = await signLease(
      {
        iss: PROXY,
        aud: PROXY,
        sub: `nexus://nexus.example/agent/${alg}`,
        iat: now,
        nbf: now,
        exp: now + 900,
        jti: `fast-path-lease-${alg}-0123456789`,
        scope: 'reader',
        cnf: { jwk: key.publicJwk },
      },
      authority.privateKey,
      { alg: 'EdDSA', kid: 'k1' },
    );
    agents.push({ key, lease });
  }
});

const ascii = (chars: string): fc.Arbitrary<string> => fc.constantFrom(...chars.split(''));
const PRINTABLE = ' !"#$%&\'()*+,-./0123456789:;<=>?@AZaz[\\]^_`{|}~';
const segment = fc.string({ unit: ascii("abcXYZ019-._~%!$&'()*+,;=:@"), maxLength: 8 });

const requestSpec = fc.record({
  agent: fc.integer({ min: 0, max: 1 }),
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'get'),
  path: fc.array(segment, { maxLength: 4 }).map((s) => `/github/${s.join('/')}`),
  query: fc.option(fc.string({ unit: ascii('ab=&%2F?/+ '), maxLength: 12 }), { nil: undefined }),
  intent: fc.string({ unit: ascii(PRINTABLE), maxLength: 24 }),
  nonce: fc.oneof(
    fc.string({ unit: ascii('ABCxyz0189-_'), minLength: 16, maxLength: 24 }),
    fc.string({ unit: ascii(PRINTABLE), minLength: 16, maxLength: 24 }),
  ),
  body: fc.boolean(),
  profile: fc.constantFrom<SignatureProfile>('nexus/1.1', 'nexus/1'),
  ttl: fc.integer({ min: 1, max: 60 }),
});
type RequestSpec = typeof requestSpec extends fc.Arbitrary<infer T> ? T : never;

const FIELDS = [
  'signature-input',
  'signature-input',
  'signature-input',
  'signature',
  'nexus-intent',
  'workload-identity-token',
  'content-digest',
  'content-type',
] as const;
type Field = (typeof FIELDS)[number];

/** Meaning-preserving (for the strict parser) or meaning-changing structured-field rewrites. */
const REWRITES: ReadonlyArray<(input: string, sig: string) => [string, string]> = [
  (i, s) => [i.replace('(', '( '), s],
  (i, s) => [i.replace('" "', '"  "'), s],
  (i, s) => [i.replace(';created=', ';created=0'), s],
  (i, s) => [i.replace(';expires=', ';expires=-'), s],
  (i, s) => [i.replace(';nonce=', '; nonce='), s],
  (i, s) => [` ${i}`, `${s} `],
  (i, s) => [`${i}\t`, s],
  (i, s) => [i.replace(/(;nonce="[^"]*")(.*)$/, '$2$1'), s],
  (i, s) => [i.replace('"wimse-workload-to-workload"', 'wimse-workload-to-workload'), s],
  (i, s) => [`${i};keyid="k"`, s],
  (i, s) => [`${i};alg="ed25519"`, s],
  (i, s) => [i.replace(/^wimse=/, 'sig='), s.replace(/^wimse=/, 'sig=')],
  (i, s) => [i.replace(/^wimse=/, 'Wimse='), s.replace(/^wimse=/, 'Wimse=')],
  (i, s) => [`${i}, other=("@method");created=1`, `${s}, other=:AAAA:`],
  (i, s) => [`other=("@method");created=1, ${i}`, `other=:AAAA:, ${s}`],
  (i, s) => [`${i}, ${i}`, `${s}, ${s}`],
  (i, s) => [i, s.replace(/==:$/, ':')],
  (i, s) => [i, s.replace(/.(==:)$/, 'B$1')],
  (i, s) => [i, s.replace(/^wimse=:/, 'wimse=:=')],
  (i, s) => [i.replace('"content-type" "content-digest"', '"content-digest" "content-type"'), s],
  (i, s) => [i.replace('"nexus-intent"', '"nexus-intent";sf'), s],
  (i, s) => [i.replace('"@method"', '"@method" "@method"'), s],
  (i, s) => [i.replace(/wimse-aud="[^"]*"/, 'wimse-aud="x\\"y"'), s],
  (i, s) => [i.replace(/"$/, '";x'), s],
  (i, s) => [i.replace(/\)/, ')\t'), s],
  // Review (issue 14): obs-fold, a 16-digit integer, a repeated parameter, a second tag.
  (i, s) => [i.replace(';nonce=', '\r\n ;nonce='), s],
  (i, s) => [i.replace(/;created=(\d+)/, ';created=1000000000000000$1'), s],
  (i, s) => [i.replace(/;created=(\d+)/, ';created=$1;created=$1'), s],
  (i, s) => [i.replace(/;expires=(\d+)/, ';expires=1'), s],
  (i, s) => [`${i};tag="wimse-workload-to-workload"`, s],
  (i, s) => [i.replace('"nexus-intent"', '"Nexus-Intent"'), s],
];

const mutation = fc.oneof(
  { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('char' as const),
      field: fc.constantFrom(...FIELDS),
      at: fc.nat(),
      ch: ascii(`${PRINTABLE}\t`),
      op: fc.constantFrom('replace' as const, 'insert' as const, 'delete' as const),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('rewrite' as const),
      which: fc.integer({ min: 0, max: REWRITES.length - 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('intent' as const),
      value: fc.constantFrom('"a"', ' "a" ', '"a";x', 'a', '"a\\"b"', '"a\\\\"', '""', '"é"'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('pad' as const),
      field: fc.constantFrom(...FIELDS),
      before: fc.constantFrom('', ' ', '\t', ' \t'),
      after: fc.constantFrom('', ' ', '\t', '\t '),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('drop' as const), field: fc.constantFrom(...FIELDS) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('repeat' as const),
      field: fc.constantFrom(...FIELDS),
      value: fc.string({ maxLength: 8 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('method' as const),
      method: fc.constantFrom('GET', 'POST', 'get', '', 'POST\n'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('url' as const),
      at: fc.nat(),
      ch: ascii('/?#a%\r\n '),
    }),
  },
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

interface Case {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
}

async function signed(spec: RequestSpec): Promise<Case> {
  const agent = agents[spec.agent]!;
  const url = `${PROXY}${spec.path}${spec.query === undefined ? '' : `?${spec.query}`}`;
  const base: Record<string, string> = spec.body ? { 'content-type': 'application/json' } : {};
  const added = await signRequest({
    method: spec.method,
    url,
    headers: base,
    body: spec.body ? '{"a":1}' : undefined,
    lease: agent.lease,
    key: agent.key.privateKey,
    intent: spec.intent,
    nonce: spec.nonce,
    now: () => NOW,
    ttlSeconds: spec.ttl,
    profile: spec.profile,
  });
  const method = ['GET', 'POST', 'PUT', 'DELETE'].includes(spec.method.toUpperCase())
    ? spec.method.toUpperCase()
    : spec.method;
  return { method, url, headers: { host: 'nexus.example', ...base, ...added } };
}

function mutate(c: Case, m: Mutation): Case {
  const headers = { ...c.headers };
  let { method, url } = c;
  const text = (f: Field): string => {
    const v = headers[f];
    return typeof v === 'string' ? v : '';
  };
  switch (m.kind) {
    case 'none':
      break;
    case 'char': {
      const v = text(m.field);
      const at = m.at % (v.length + 1);
      headers[m.field] =
        m.op === 'insert'
          ? v.slice(0, at) + m.ch + v.slice(at)
          : m.op === 'delete'
            ? v.slice(0, at) + v.slice(at + 1)
            : v.slice(0, at) + m.ch + v.slice(at + 1);
      break;
    }
    case 'rewrite': {
      const [i, s] = REWRITES[m.which]!(text('signature-input'), text('signature'));
      headers['signature-input'] = i;
      headers.signature = s;
      break;
    }
    case 'intent':
      headers['nexus-intent'] = m.value;
      break;
    case 'pad':
      if (headers[m.field] !== undefined) headers[m.field] = m.before + text(m.field) + m.after;
      break;
    case 'drop':
      delete headers[m.field];
      break;
    case 'repeat':
      headers[m.field] = [text(m.field), m.value];
      break;
    case 'method':
      method = m.method;
      break;
    case 'url': {
      const at = PROXY.length + (m.at % (url.length - PROXY.length));
      url = url.slice(0, at) + m.ch + url.slice(at);
      break;
    }
  }
  return { method, url, headers };
}

/** The verdict: the result fields on success, the error code on refusal. */
async function verdict(c: Case, fastPath: boolean): Promise<unknown> {
  try {
    const v = await verifyRequestSignature({
      method: c.method,
      url: c.url,
      headers: c.headers,
      issuer: PROXY,
      audience: PROXY,
      getAuthorityKey: async (h) => (h.kid === 'k1' ? authority.publicKey : undefined),
      now: () => NOW,
      fastPath,
    });
    const { claims, ...rest } = v;
    return { ok: true, jti: claims.jti, ...rest };
  } catch (err) {
    if (!isNexusError(err)) throw err;
    return { ok: false, code: err.code };
  }
}

describe('verification fast path (issue 14 step 2)', () => {
  it(
    'gives the strict path’s verdict and error code on random and mutated signed requests',
    async () => {
      let accepted = 0;
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(requestSpec, mutation, async (spec, m) => {
          const c = mutate(await signed(spec), m);
          const strict = await verdict(c, false);
          const fast = await verdict(c, true);
          expect(fast).toEqual(strict);
          if ((strict as { ok: boolean }).ok) accepted++;
          else refused++;
        }),
        params(400),
      );
      // Both outcomes were exercised (the generator is not degenerate).
      expect(accepted).toBeGreaterThan(0);
      expect(refused).toBeGreaterThan(0);
    },
    TIMEOUT,
  );

  it('unmutated requests take the fast path and verify', async () => {
    const spec: RequestSpec = {
      agent: 0,
      method: 'POST',
      path: '/github/repos/acme/app/issues',
      query: 'state=open',
      intent: 'file a bug',
      nonce: 'abcdefghijklmnopqrstuv',
      body: true,
      profile: 'nexus/1.1',
      ttl: 30,
    };
    const c = await signed(spec);
    const parsed = parseFastSignature(
      c.headers['signature-input'] as string,
      c.headers.signature as string,
    );
    expect(parsed?.components.map((x) => x.name)).toEqual([
      '@method',
      '@path',
      '@query',
      'workload-identity-token',
      'nexus-intent',
      'content-type',
      'content-digest',
    ]);
    expect(await verdict(c, true)).toMatchObject({ ok: true, intent: 'file a bug' });
  });

  it('every structured-field rewrite, on every profile, gets the strict path’s verdict', async () => {
    // Deterministic (review): each rewrite runs at least once, whatever the random runs hit.
    for (const profile of ['nexus/1.1', 'nexus/1'] as const) {
      for (const body of [false, true]) {
        const c = await signed({
          agent: 1,
          method: body ? 'POST' : 'GET',
          path: '/github/repos',
          query: 'a=1',
          intent: 'triage issue 7',
          nonce: 'abcdefghijklmnopqrstuv',
          body,
          profile,
          ttl: 30,
        });
        for (let which = 0; which < REWRITES.length; which++) {
          const m = mutate(c, { kind: 'rewrite', which });
          expect([which, await verdict(m, true)]).toEqual([which, await verdict(m, false)]);
        }
      }
    }
  });

  it(
    'whatever the fast parser recognises, parseSignatures reads the same way',
    async () => {
      let recognised = 0;
      await fc.assert(
        fc.asyncProperty(requestSpec, mutation, async (spec, m) => {
          const c = mutate(await signed(spec), m);
          const input = c.headers['signature-input'];
          const sig = c.headers.signature;
          if (typeof input !== 'string' || typeof sig !== 'string') return;
          const fast = parseFastSignature(input, sig);
          if (fast === undefined) return;
          recognised++;
          const strict = parseSignatures(
            { headers: { 'signature-input': input, signature: sig } },
            { rejectDuplicateKeys: true },
          );
          expect(strict.size).toBe(1);
          const one = strict.get(fast.label)!;
          expect({ ...fast, signatureParams: undefined }).toEqual({
            ...one,
            signatureParams: undefined,
          });
          // The received member text is the strict serialisation the base is built with.
          expect(fast.signatureParams).toBe(
            serializeInnerList({
              kind: 'inner',
              items: one.components.map((x) => ({
                kind: 'item' as const,
                value: x.name,
                params: x.params,
              })),
              params: one.params,
            }),
          );
        }),
        params(300),
      );
      expect(recognised).toBeGreaterThan(0);
    },
    TIMEOUT,
  );

  it(
    'Content-Digest: the simple reader gives the dictionary parser’s verdict and code',
    async () => {
      const body = Buffer.from('{"a":1}');
      const sha256 = await createContentDigest(body, 'sha-256');
      const sha512 = await createContentDigest(body, 'sha-512');
      const other = await createContentDigest('{"a":2}', 'sha-256');
      /** The reading before the simple reader existed: the dictionary parser only. */
      const reference = async (value: string): Promise<unknown> => {
        try {
          const checks: Array<[string, Uint8Array]> = [];
          for (const [key, member] of parseDictionary(value, { code: 'digest_invalid' })) {
            if (key !== 'sha-256' && key !== 'sha-512') continue;
            if (member.kind !== 'item' || !(member.value instanceof Uint8Array)) {
              return 'digest_invalid';
            }
            checks.push([key, member.value]);
          }
          if (checks.length === 0) return 'digest_invalid';
          const expected = [];
          for (const [alg, bytes] of checks) {
            const want = Buffer.from(
              /:(.*):/.exec(await createContentDigest(body, alg as 'sha-256'))![1]!,
              'base64',
            );
            if (!Buffer.from(bytes).equals(want)) return 'digest_mismatch';
            expected.push(alg);
          }
          return expected;
        } catch (err) {
          if (!isNexusError(err)) throw err;
          return err.code;
        }
      };
      const actual = async (value: string): Promise<unknown> => {
        try {
          return await verifyContentDigest(value, body);
        } catch (err) {
          if (!isNexusError(err)) throw err;
          return err.code;
        }
      };
      const value = fc
        .tuple(
          fc.constantFrom(sha256, sha512, other, `${sha256}, ${sha512}`, `md5=:AAAA:, ${sha256}`),
          fc.array(
            fc.record({
              at: fc.nat(),
              ch: ascii(':=;, \t-+/aA0s"()?'),
              op: fc.constantFrom('replace', 'insert', 'delete'),
            }),
            { maxLength: 2 },
          ),
        )
        .map(([v, edits]) => {
          for (const e of edits) {
            const at = e.at % (v.length + 1);
            v =
              e.op === 'insert'
                ? v.slice(0, at) + e.ch + v.slice(at)
                : e.op === 'delete'
                  ? v.slice(0, at) + v.slice(at + 1)
                  : v.slice(0, at) + e.ch + v.slice(at + 1);
          }
          return v;
        });
      let simple = 0;
      await fc.assert(
        fc.asyncProperty(value, async (v) => {
          if (parseSimpleContentDigest(v) !== undefined) simple++;
          expect(await actual(v)).toEqual(await reference(v));
        }),
        params(1000),
      );
      expect(simple).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});
