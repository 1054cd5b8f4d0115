// Generates the Nexus profile conformance vectors from fixed test keys
// (vectors/nexus/keys.json, created once), fixed times and fixed nonces: nexus/1 (the
// deprecated @request-target edition) into vectors/nexus/, nexus/1.1 (@path and @query, the
// current WIMSE draft) into vectors/nexus-1.1/. Ed25519 output
// is byte-for-byte reproducible; P-256 / ES256 signatures are randomised by ECDSA but verify.
// Usage: npx tsc -b packages/protocol && node scripts/gen-nexus-vectors.mjs
import { createHash, createHmac, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createContentDigest,
  importJwk,
  serializeSfString,
  signMessage,
  signRequest,
  runConformanceVector,
  responseSignatureBase,
  responseSignatureParams,
} from '../packages/protocol/dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'vectors', 'nexus');
mkdirSync(dir, { recursive: true });

// --- keys ------------------------------------------------------------------------------
const keysFile = join(dir, 'keys.json');
if (!existsSync(keysFile)) {
  const make = (type, kid, alg) => {
    const opts = type === 'ec' ? { namedCurve: 'P-256' } : {};
    const { privateKey } = generateKeyPairSync(type, opts);
    return { ...privateKey.export({ format: 'jwk' }), kid, alg };
  };
  const keys = {
    note: 'TEST KEYS ONLY. Never use them for anything but these vectors.',
    authority: make('ed25519', 'authority-ed25519-1', 'EdDSA'),
    authority_es256: make('ec', 'authority-es256-1', 'ES256'),
    rogue_authority: make('ed25519', 'authority-ed25519-1', 'EdDSA'),
    alice: make('ed25519', 'alice-ed25519', 'EdDSA'),
    alice_p256: make('ec', 'alice-p256', 'ES256'),
    bob: make('ed25519', 'bob-ed25519', 'EdDSA'),
  };
  writeFileSync(keysFile, `${JSON.stringify(keys, null, 2)}\n`);
}
const KEYS = JSON.parse(readFileSync(keysFile, 'utf8'));
const without = (obj, ...names) =>
  Object.fromEntries(Object.entries(obj).filter(([k]) => !names.includes(k)));
const pub = (k) => without(k, 'd');
const cnfOf = (k) => without(k, 'd', 'kid');

// --- fixed values ----------------------------------------------------------------------
const NOW = 1785000000;
const ISSUER = 'https://nexus.example';
const AUDIENCE = 'https://nexus.example';
const URL_GET = 'https://nexus.example/github/repos/acme/widgets/issues?state=open';
const URL_POST = 'https://nexus.example/github/repos/acme/widgets/issues';
const BODY = '{"title":"Widget jams at speed","labels":["bug"]}';
const INTENT = 'triage new widget issues';
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const fixed = (label, bytes = 16) =>
  b64u(createHash('sha256').update(label).digest().subarray(0, bytes));
const AUTHORITY_JWKS = { keys: [pub(KEYS.authority), pub(KEYS.authority_es256)] };
const REQUIRED_V1 = ['@method', '@request-target', 'workload-identity-token', 'nexus-intent'];
const REQUIRED_V1_1 = ['@method', '@path', '@query', 'workload-identity-token', 'nexus-intent'];

// --- lease tokens (hand-built so that broken headers can be produced) -------------------
function jwt(header, payload, signer) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  return `${input}.${signer ? b64u(signer(Buffer.from(input))) : ''}`;
}
const ed = (jwk) => (data) => sign(null, data, createPrivateKey({ key: jwk, format: 'jwk' }));
const es = (jwk) => (data) =>
  sign('sha256', data, {
    key: createPrivateKey({ key: jwk, format: 'jwk' }),
    dsaEncoding: 'ieee-p1363',
  });

function claims(id, overrides = {}) {
  return {
    iss: ISSUER,
    sub: 'nexus://nexus.example/agent/alice',
    aud: AUDIENCE,
    iat: NOW - 60,
    nbf: NOW - 60,
    exp: NOW + 840,
    jti: fixed(`jti:${id}`),
    scope: 'triage',
    cnf: { jwk: cnfOf(KEYS.alice) },
    ...overrides,
  };
}
function lease(id, { header = {}, payload = {}, signer = ed(KEYS.authority) } = {}) {
  return jwt(
    { alg: 'EdDSA', kid: KEYS.authority.kid, typ: 'wit+jwt', ...header },
    claims(id, payload),
    signer,
  );
}

// --- requests --------------------------------------------------------------------------
// One suite per profile: the same cases, signed with that profile's components, plus the
// cases only one profile has.
async function suite(PROFILE) {
  const V1 = PROFILE === 'nexus/1';
  const REQUIRED = V1 ? REQUIRED_V1 : REQUIRED_V1_1;
  async function build(id, o = {}) {
    const method = o.method ?? (o.body ? 'POST' : 'GET');
    const url = o.url ?? (o.body ? URL_POST : URL_GET);
    const headers = {
      'workload-identity-token': o.lease ?? lease(id),
      'nexus-intent': o.intentHeader ?? serializeSfString(o.intent ?? INTENT),
    };
    const body = o.body ?? '';
    if (body) {
      headers['content-type'] = 'application/json';
      if (o.digest !== null)
        headers['content-digest'] = o.digest ?? (await createContentDigest(body));
    }
    const components = o.components ?? [
      ...REQUIRED,
      ...(body && o.digest !== null ? ['content-type', 'content-digest'] : []),
    ];
    const created = o.created ?? NOW - 2;
    const params = o.params ?? {
      created,
      expires: o.expires ?? created + 30,
      nonce: o.nonce ?? fixed(`nonce:${id}`),
      tag: 'wimse-workload-to-workload',
      'wimse-aud': url.split('?')[0],
    };
    const signerJwk = o.signer ?? KEYS.alice;
    const algorithm = signerJwk.crv === 'P-256' ? 'ecdsa-p256-sha256' : 'ed25519';
    const key = await importJwk(signerJwk, algorithm, 'sign');
    const signed = await signMessage(
      { method, url, headers },
      { label: o.label ?? 'wimse', components, params, key, algorithm },
    );
    headers['signature-input'] = signed.signatureInput;
    headers['signature'] = signed.signature;
    const input = { method, url, headers };
    if (body) input.body_base64 = Buffer.from(body).toString('base64');
    return { input, base: signed.signatureBase };
  }

  const vectors = [];
  function add(id, requirement, description, built, expected, verifier = {}) {
    vectors.push({
      id,
      description,
      requirement,
      now: NOW,
      input: built.input,
      verifier: { issuer: ISSUER, audience: AUDIENCE, authority_jwks: AUTHORITY_JWKS, ...verifier },
      expected:
        expected === 'accept'
          ? { verdict: 'accept', signature_base: built.base }
          : { verdict: 'reject', code: expected },
    });
  }
  const mutate = (built, f) => {
    const copy = JSON.parse(JSON.stringify(built));
    f(copy.input);
    return copy;
  };

  // Accepted requests.
  add(
    'valid-get',
    'SIG-VERIFY',
    'GET with an Ed25519 agent key',
    await build('valid-get'),
    'accept',
  );
  add(
    'valid-post',
    'SIG-BODY-COVERED',
    'POST with a JSON body, Content-Type and sha-256 Content-Digest',
    await build('valid-post', { body: BODY }),
    'accept',
  );
  add(
    'valid-p256-agent',
    'SIG-VERIFY',
    'GET signed with a P-256 agent key (ecdsa-p256-sha256, raw r||s)',
    await build('valid-p256-agent', {
      signer: KEYS.alice_p256,
      lease: lease('valid-p256-agent', { payload: { cnf: { jwk: cnfOf(KEYS.alice_p256) } } }),
    }),
    'accept',
  );
  add(
    'valid-sha512-digest',
    'DIGEST-ALG',
    'POST with a sha-512 Content-Digest',
    await build('valid-sha512-digest', {
      body: BODY,
      digest: await createContentDigest(BODY, 'sha-512'),
    }),
    'accept',
  );
  add(
    'valid-es256-authority',
    'LEASE-ALG',
    'lease signed by the ES256 Authority key',
    await build('valid-es256-authority', {
      lease: lease('valid-es256-authority', {
        header: { alg: 'ES256', kid: KEYS.authority_es256.kid },
        signer: es(KEYS.authority_es256),
      }),
    }),
    'accept',
  );
  add(
    'valid-empty-intent',
    'INTENT-FORMAT',
    'an empty Nexus-Intent is allowed',
    await build('valid-empty-intent', { intent: '' }),
    'accept',
  );
  add(
    'valid-extra-components',
    'SIG-COVERED',
    'components in another order plus an extra one (@authority)',
    await build('valid-extra-components', {
      components: V1
        ? ['nexus-intent', '@authority', 'workload-identity-token', '@request-target', '@method']
        : ['nexus-intent', '@authority', 'workload-identity-token', '@query', '@path', '@method'],
    }),
    'accept',
  );
  add(
    'valid-created-within-skew',
    'SIG-CREATED-FUTURE',
    'created 4 s ahead of the verifier clock (skew 5 s)',
    await build('valid-created-within-skew', { created: NOW + 4 }),
    'accept',
  );
  add(
    'valid-act-and-task',
    'LEASE-CLAIMS',
    'lease with act (RFC 8693) and nexus_task',
    await build('valid-act-and-task', {
      lease: lease('valid-act-and-task', {
        payload: { act: { sub: 'user:jane@example.com' }, nexus_task: 'task-42' },
      }),
    }),
    'accept',
  );
  {
    // Produced by signRequest itself (the SDK path).
    const key = await importJwk(KEYS.alice, 'ed25519', 'sign');
    const l = lease('valid-sign-request');
    const added = await signRequest({
      method: 'POST',
      url: URL_POST,
      headers: { 'content-type': 'application/json' },
      body: BODY,
      lease: l,
      key,
      intent: INTENT,
      now: () => (NOW - 1) * 1000,
      nonce: fixed('nonce:valid-sign-request'),
      profile: PROFILE,
    });
    const input = {
      method: 'POST',
      url: URL_POST,
      headers: { 'content-type': 'application/json', ...added },
      body_base64: Buffer.from(BODY).toString('base64'),
    };
    const base = [
      `"@method": POST`,
      ...(V1
        ? [`"@request-target": /github/repos/acme/widgets/issues`]
        : [`"@path": /github/repos/acme/widgets/issues`, `"@query": ?`]),
      `"workload-identity-token": ${l}`,
      `"nexus-intent": ${serializeSfString(INTENT)}`,
      `"content-type": application/json`,
      `"content-digest": ${added['content-digest']}`,
      `"@signature-params": ${added['signature-input'].slice('wimse='.length)}`,
    ].join('\n');
    add(
      'valid-sign-request',
      'SIG-COVERED',
      'POST produced by signRequest',
      { input, base },
      'accept',
    );
  }

  // Lease.
  add(
    'lease-missing',
    'LEASE-HEADER',
    'no Workload-Identity-Token',
    mutate(await build('lease-missing'), (i) => delete i.headers['workload-identity-token']),
    'lease_missing',
  );
  add(
    'lease-expired',
    'LEASE-EXP',
    'lease exp 100 s ago (skew 30 s)',
    await build('lease-expired', {
      lease: lease('lease-expired', {
        payload: { iat: NOW - 1000, nbf: NOW - 1000, exp: NOW - 100 },
      }),
      created: NOW - 130,
      expires: NOW - 110,
    }),
    'lease_expired',
  );
  add(
    'lease-not-yet-valid',
    'LEASE-NBF',
    'lease nbf 120 s ahead',
    await build('lease-not-yet-valid', {
      lease: lease('lease-not-yet-valid', {
        payload: { iat: NOW + 120, nbf: NOW + 120, exp: NOW + 1000 },
      }),
    }),
    'lease_not_yet_valid',
  );
  add(
    'lease-wrong-typ',
    'LEASE-TYP',
    'lease typ JWT instead of wit+jwt',
    await build('lease-wrong-typ', { lease: lease('lease-wrong-typ', { header: { typ: 'JWT' } }) }),
    'lease_invalid',
  );
  add(
    'lease-alg-none',
    'LEASE-ALG',
    'unsecured lease (alg none)',
    await build('lease-alg-none', {
      lease: lease('lease-alg-none', { header: { alg: 'none' }, signer: null }),
    }),
    'lease_invalid',
  );
  {
    const secret = Buffer.from(JSON.stringify(pub(KEYS.authority)));
    const hs = (data) => createHmac('sha256', secret).update(data).digest();
    add(
      'lease-hs256-public-key',
      'LEASE-ALG',
      'lease HS256-signed with the Authority public key as the secret',
      await build('lease-hs256-public-key', {
        lease: lease('lease-hs256-public-key', { header: { alg: 'HS256' }, signer: hs }),
      }),
      'lease_invalid',
    );
  }
  add(
    'lease-unknown-kid',
    'LEASE-KID',
    'lease kid not in the Authority JWKS',
    await build('lease-unknown-kid', {
      lease: lease('lease-unknown-kid', { header: { kid: 'retired-key' } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-no-kid',
    'LEASE-KID',
    'lease header without kid',
    await build('lease-no-kid', { lease: lease('lease-no-kid', { header: { kid: undefined } }) }),
    'lease_invalid',
  );
  add(
    'lease-bad-signature',
    'LEASE-SIG',
    'lease signed by another key under the Authority kid',
    await build('lease-bad-signature', {
      lease: lease('lease-bad-signature', { signer: ed(KEYS.rogue_authority) }),
    }),
    'lease_invalid',
  );
  add(
    'lease-foreign-issuer',
    'LEASE-ISS',
    'lease iss is another Authority',
    await build('lease-foreign-issuer', {
      lease: lease('lease-foreign-issuer', { payload: { iss: 'https://evil.example' } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-wrong-audience',
    'LEASE-AUD',
    'lease aud is another proxy',
    await build('lease-wrong-audience', {
      lease: lease('lease-wrong-audience', { payload: { aud: 'https://other-proxy.example' } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-missing-scope',
    'LEASE-CLAIMS',
    'lease without scope',
    await build('lease-missing-scope', {
      lease: lease('lease-missing-scope', { payload: { scope: undefined } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-short-jti',
    'LEASE-CLAIMS',
    'lease jti under 128 bits',
    await build('lease-short-jti', {
      lease: lease('lease-short-jti', { payload: { jti: 'abc123' } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-bad-sub',
    'LEASE-CLAIMS',
    'lease sub is not a nexus agent URI',
    await build('lease-bad-sub', {
      lease: lease('lease-bad-sub', { payload: { sub: 'spiffe://example/alice' } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-cnf-private',
    'LEASE-CNF',
    'cnf.jwk carries the private key (d)',
    await build('lease-cnf-private', {
      lease: lease('lease-cnf-private', {
        payload: { cnf: { jwk: without(KEYS.alice, 'kid') } },
      }),
    }),
    'lease_invalid',
  );
  add(
    'lease-cnf-alg-mismatch',
    'LEASE-CNF',
    'cnf.jwk is Ed25519 but says alg ES256',
    await build('lease-cnf-alg-mismatch', {
      lease: lease('lease-cnf-alg-mismatch', {
        payload: { cnf: { jwk: { ...cnfOf(KEYS.alice), alg: 'ES256' } } },
      }),
    }),
    'lease_invalid',
  );
  add(
    'lease-cnf-missing',
    'LEASE-CNF',
    'lease without cnf',
    await build('lease-cnf-missing', {
      lease: lease('lease-cnf-missing', { payload: { cnf: undefined } }),
    }),
    'lease_invalid',
  );
  add(
    'lease-revoked',
    'LEASE-REVOKED',
    'lease jti is revoked',
    await build('lease-revoked'),
    'lease_revoked',
    { revoked_jtis: [fixed('jti:lease-revoked')] },
  );
  add(
    'lease-of-other-agent',
    'SIG-VERIFY',
    "Bob's lease presented with a request signed by Alice's key",
    await build('lease-of-other-agent', {
      lease: lease('lease-of-other-agent', {
        payload: { sub: 'nexus://nexus.example/agent/bob', cnf: { jwk: cnfOf(KEYS.bob) } },
      }),
    }),
    'signature_invalid',
  );

  // Signature fields and parameters.
  add(
    'signature-missing',
    'SIG-SINGLE',
    'no Signature field',
    mutate(await build('signature-missing'), (i) => delete i.headers.signature),
    'signature_missing',
  );
  add(
    'key-not-matching-cnf',
    'SIG-VERIFY',
    'signed with a key other than cnf.jwk',
    await build('key-not-matching-cnf', { signer: KEYS.bob }),
    'signature_invalid',
  );
  add(
    'wrong-tag',
    'SIG-TAG',
    'tag is not wimse-workload-to-workload',
    await build('wrong-tag', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:wrong-tag'),
        tag: 'wimse-service-to-service',
        'wimse-aud': URL_GET.split('?')[0],
      },
    }),
    'signature_invalid',
  );
  add(
    'keyid-present',
    'SIG-NO-KEYID',
    'keyid parameter present',
    await build('keyid-present', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        keyid: 'alice-ed25519',
        nonce: fixed('nonce:keyid-present'),
        tag: 'wimse-workload-to-workload',
        'wimse-aud': URL_GET.split('?')[0],
      },
    }),
    'signature_invalid',
  );
  add(
    'alg-param-present',
    'SIG-NO-KEYID',
    'alg parameter present',
    await build('alg-param-present', {
      params: {
        alg: 'ed25519',
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:alg-param-present'),
        tag: 'wimse-workload-to-workload',
        'wimse-aud': URL_GET.split('?')[0],
      },
    }),
    'signature_invalid',
  );
  if (V1) {
    const one = await build('two-labels');
    const two = await build('two-labels-b', {
      label: 'extra',
      lease: one.input.headers['workload-identity-token'],
    });
    add(
      'two-labels',
      'SIG-SINGLE',
      'two signatures (wimse and extra)',
      mutate(one, (i) => {
        i.headers['signature-input'] += `, ${two.input.headers['signature-input']}`;
        i.headers.signature += `, ${two.input.headers.signature}`;
      }),
      'signature_invalid',
    );
    add(
      'label-not-wimse',
      'SIG-SINGLE',
      'the only signature is labelled sig1',
      await build('label-not-wimse', { label: 'sig1' }),
      'signature_invalid',
    );
  } else {
    // nexus/1.1: the WIMSE signature is found by its tag, whatever its label.
    const one = await build('two-tagged');
    const two = await build('two-tagged-b', {
      label: 'extra',
      lease: one.input.headers['workload-identity-token'],
    });
    add(
      'two-tagged',
      'SIG-SELECT',
      'two signatures both tagged wimse-workload-to-workload (wimse and extra)',
      mutate(one, (i) => {
        i.headers['signature-input'] += `, ${two.input.headers['signature-input']}`;
        i.headers.signature += `, ${two.input.headers.signature}`;
      }),
      'signature_invalid',
    );
    const main = await build('valid-second-signature');
    const other = await build('valid-second-signature-b', {
      label: 'wimse',
      lease: main.input.headers['workload-identity-token'],
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:valid-second-signature-b'),
        tag: 'gateway-audit',
      },
    });
    add(
      'valid-second-signature',
      'SIG-SELECT',
      'the WIMSE signature labelled sig7 next to another signature labelled wimse with another tag',
      {
        input: {
          ...main.input,
          headers: {
            ...main.input.headers,
            'signature-input': `${other.input.headers['signature-input']}, ${main.input.headers['signature-input'].replace(/^wimse=/, 'sig7=')}`,
            signature: `${other.input.headers.signature}, ${main.input.headers.signature.replace(/^wimse=/, 'sig7=')}`,
          },
        },
        base: main.base,
      },
      'accept',
    );
    add(
      'valid-label-not-wimse',
      'SIG-SELECT',
      'the only signature is labelled sig1 (selected by tag)',
      await build('valid-label-not-wimse', { label: 'sig1' }),
      'accept',
    );
    add(
      'no-tagged-signature',
      'SIG-TAG',
      'two signatures, neither tagged wimse-workload-to-workload',
      await (async () => {
        const params = (id) => ({
          created: NOW - 2,
          expires: NOW + 28,
          nonce: fixed(`nonce:${id}`),
          tag: 'gateway-audit',
          'wimse-aud': URL_GET.split('?')[0],
        });
        const x = await build('no-tagged-signature', { params: params('no-tagged-signature') });
        const y = await build('no-tagged-signature-b', {
          label: 'extra',
          lease: x.input.headers['workload-identity-token'],
          params: params('no-tagged-signature-b'),
        });
        return mutate(x, (i) => {
          i.headers['signature-input'] += `, ${y.input.headers['signature-input']}`;
          i.headers.signature += `, ${y.input.headers.signature}`;
        });
      })(),
      'signature_invalid',
    );
  }
  add(
    'nonce-missing',
    'SIG-PARAMS',
    'no nonce parameter',
    await build('nonce-missing', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        tag: 'wimse-workload-to-workload',
        'wimse-aud': URL_GET.split('?')[0],
      },
    }),
    'signature_invalid',
  );
  add(
    'expires-missing',
    'SIG-PARAMS',
    'no expires parameter',
    await build('expires-missing', {
      params: {
        created: NOW - 2,
        nonce: fixed('nonce:expires-missing'),
        tag: 'wimse-workload-to-workload',
        'wimse-aud': URL_GET.split('?')[0],
      },
    }),
    'signature_invalid',
  );
  add(
    'wimse-aud-missing',
    'SIG-PARAMS',
    'no wimse-aud parameter',
    await build('wimse-aud-missing', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:wimse-aud-missing'),
        tag: 'wimse-workload-to-workload',
      },
    }),
    'signature_invalid',
  );
  add(
    'short-nonce',
    'SIG-NONCE',
    'nonce of 8 characters',
    await build('short-nonce', { nonce: 'abcd1111' }),
    'signature_invalid',
  );
  add(
    'wimse-aud-mismatch',
    'SIG-AUD',
    'wimse-aud names another service path',
    await build('wimse-aud-mismatch', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:wimse-aud-mismatch'),
        tag: 'wimse-workload-to-workload',
        'wimse-aud': 'https://nexus.example/slack/chat.postMessage',
      },
    }),
    'signature_invalid',
  );
  add(
    'wimse-aud-with-query',
    'SIG-AUD',
    'wimse-aud includes the query',
    await build('wimse-aud-with-query', {
      params: {
        created: NOW - 2,
        expires: NOW + 28,
        nonce: fixed('nonce:wimse-aud-with-query'),
        tag: 'wimse-workload-to-workload',
        'wimse-aud': URL_GET,
      },
    }),
    'signature_invalid',
  );
  add(
    'intent-not-covered',
    'SIG-COVERED',
    'nexus-intent not covered',
    await build('intent-not-covered', {
      components: REQUIRED.filter((c) => c !== 'nexus-intent'),
    }),
    'signature_invalid',
  );
  add(
    'lease-not-covered',
    'SIG-COVERED',
    'workload-identity-token not covered',
    await build('lease-not-covered', {
      components: REQUIRED.filter((c) => c !== 'workload-identity-token'),
    }),
    'signature_invalid',
  );
  if (V1) {
    add(
      'target-not-covered',
      'SIG-COVERED',
      '@request-target not covered (only @path)',
      await build('target-not-covered', {
        components: ['@method', '@path', 'workload-identity-token', 'nexus-intent'],
      }),
      'signature_invalid',
    );
  } else {
    add(
      'query-not-covered',
      'SIG-COVERED',
      '@query not covered (@method @path only)',
      await build('query-not-covered', {
        components: ['@method', '@path', 'workload-identity-token', 'nexus-intent'],
      }),
      'signature_invalid',
    );
    add(
      'path-not-covered',
      'SIG-COVERED',
      '@path not covered (@method @query only)',
      await build('path-not-covered', {
        components: ['@method', '@query', 'workload-identity-token', 'nexus-intent'],
      }),
      'signature_invalid',
    );
    add(
      'method-not-covered',
      'SIG-COVERED',
      '@method not covered',
      await build('method-not-covered', {
        components: REQUIRED.filter((c) => c !== '@method'),
      }),
      'signature_invalid',
    );
    add(
      'valid-v1-signature',
      'SIG-PROFILE',
      'a nexus/1 signature (@request-target) during the deprecation period',
      await build('valid-v1-signature', { components: REQUIRED_V1 }),
      'accept',
    );
    add(
      'v1-signature-refused',
      'SIG-PROFILE',
      'a nexus/1 signature at a verifier that accepts nexus/1.1 only',
      await build('v1-signature-refused', { components: REQUIRED_V1 }),
      'signature_invalid',
      { profiles: ['nexus/1.1'] },
    );
    add(
      'valid-no-query',
      'SIG-COVERED',
      'a request without a query: @query is "?"',
      await build('valid-no-query', { url: URL_POST }),
      'accept',
    );
    add(
      'tampered-query-added',
      'SIG-VERIFY',
      'signed without a query, sent with one',
      mutate(
        await build('tampered-query-added', { url: URL_POST }),
        (i) => (i.url += '?state=all'),
      ),
      'signature_invalid',
    );
    add(
      'tampered-query-removed',
      'SIG-VERIFY',
      'signed with a query, sent without it',
      mutate(await build('tampered-query-removed'), (i) => (i.url = i.url.split('?')[0])),
      'signature_invalid',
    );
    add(
      'valid-typ-application-prefix',
      'LEASE-TYP',
      'lease typ application/wit+jwt (RFC 7515 §4.1.9)',
      await build('valid-typ-application-prefix', {
        lease: lease('valid-typ-application-prefix', { header: { typ: 'application/wit+jwt' } }),
      }),
      'accept',
    );
    add(
      'lease-typ-other-media-type',
      'LEASE-TYP',
      'lease typ application/jwt',
      await build('lease-typ-other-media-type', {
        lease: lease('lease-typ-other-media-type', { header: { typ: 'application/jwt' } }),
      }),
      'lease_invalid',
    );
  }
  add(
    'digest-not-covered',
    'SIG-BODY-COVERED',
    'body with Content-Digest present but not covered',
    await build('digest-not-covered', { body: BODY, components: [...REQUIRED, 'content-type'] }),
    'signature_invalid',
  );
  add(
    'content-type-not-covered',
    'SIG-BODY-COVERED',
    'body with content-type not covered',
    await build('content-type-not-covered', {
      body: BODY,
      components: [...REQUIRED, 'content-digest'],
    }),
    'signature_invalid',
  );

  // Intent.
  add(
    'intent-missing',
    'INTENT-REQUIRED',
    'no Nexus-Intent field',
    mutate(await build('intent-missing'), (i) => delete i.headers['nexus-intent']),
    'intent_invalid',
  );
  add(
    'intent-too-long',
    'INTENT-FORMAT',
    'Nexus-Intent of 513 characters',
    await build('intent-too-long', { intent: 'x'.repeat(513) }),
    'intent_invalid',
  );
  add(
    'intent-token',
    'INTENT-FORMAT',
    'Nexus-Intent is a token, not an sf-string',
    await build('intent-token', { intentHeader: 'triage' }),
    'intent_invalid',
  );

  // Signed Nexus responses (spec §10.4), nexus/1.1 suite: verified as an agent does.
  if (!V1) {
    const REQ = { method: 'POST', url: URL_GET, nonce: fixed('nonce:response-request') };
    const problem = JSON.stringify({
      type: 'urn:nexus:problem:policy_denied',
      title: 'Policy denied',
      status: 403,
      code: 'policy_denied',
      detail: 'no rule allows this request',
      request_id: 'pq3Vd0h7Jc2Lr9Xa',
    });
    const response = (status = 403, requestNonce = REQ.nonce) => {
      const headers = {
        'content-type': 'application/problem+json',
        'nexus-request-id': 'pq3Vd0h7Jc2Lr9Xa',
        'nexus-error': 'policy_denied',
        'content-digest': `sha-256=:${createHash('sha256').update(problem).digest('base64')}:`,
      };
      const params = responseSignatureParams({
        created: NOW,
        nonce: fixed('nonce:response'),
        kid: KEYS.authority.kid,
        requestNonce,
      });
      const { base, signatureParams } = responseSignatureBase({ status, headers }, REQ, params);
      headers['signature-input'] = `nexus=${signatureParams}`;
      headers['signature'] = `nexus=:${ed(KEYS.authority)(Buffer.from(base)).toString('base64')}:`;
      return { status, headers, body_base64: Buffer.from(problem).toString('base64') };
    };
    const addResponse = (id, requirement, description, message, expected, request = REQ) =>
      vectors.push({
        id,
        kind: 'nexus-response',
        description,
        requirement,
        now: NOW,
        message,
        request,
        authority_jwks: AUTHORITY_JWKS,
        expected:
          expected === 'accept' ? { verdict: 'accept' } : { verdict: 'reject', code: expected },
      });
    addResponse('response-signed', 'RESP-SIGNED', 'a signed policy_denied', response(), 'accept');
    {
      const m = response();
      delete m.headers.signature;
      delete m.headers['signature-input'];
      addResponse(
        'response-unsigned',
        'RESP-SIGNED',
        'Nexus-Error without a signature',
        m,
        'signature_missing',
      );
    }
    addResponse(
      'response-other-request',
      'RESP-SIGNED',
      'signed for another request (wimse-req-nonce of another nonce)',
      response(403, fixed('nonce:another-request')),
      'signature_invalid',
    );
    {
      const m = response();
      m.headers['nexus-error'] = 'signature_expired';
      addResponse(
        'response-error-changed',
        'RESP-SIGNED',
        'Nexus-Error changed after signing',
        m,
        'signature_invalid',
      );
    }
    {
      const m = response();
      m.status = 401;
      addResponse(
        'response-status-changed',
        'RESP-SIGNED',
        'status changed after signing',
        m,
        'signature_invalid',
      );
    }
    {
      const m = response();
      m.body_base64 = Buffer.from(problem.replace('policy_denied', 'lease_revoked')).toString(
        'base64',
      );
      addResponse(
        'response-body-changed',
        'RESP-SIGNED',
        'body changed after signing',
        m,
        'digest_mismatch',
      );
    }
    addResponse(
      'response-path-changed',
      'RESP-SIGNED',
      'verified against another request path',
      response(),
      'signature_invalid',
      { ...REQ, url: URL_POST },
    );
  }

  // Relayed upstream answers (spec §10.4), nexus/1.1 suite: `Nexus-Origin: upstream`, signed
  // by Nexus over the status, the request and the relayed Content-Type; never the body.
  if (!V1) {
    const REQ = { method: 'GET', url: URL_GET, nonce: fixed('nonce:relayed-request') };
    const relayed = (status = 200, requestNonce = REQ.nonce, contentType = 'application/json') => {
      const headers = {
        ...(contentType === undefined ? {} : { 'content-type': contentType }),
        'nexus-request-id': 'rL4yQ2m8Vb0Tn6Wc',
        'nexus-origin': 'upstream',
      };
      const params = responseSignatureParams({
        created: NOW,
        nonce: fixed('nonce:relayed'),
        kid: KEYS.authority.kid,
        requestNonce,
      });
      const { base, signatureParams } = responseSignatureBase({ status, headers }, REQ, params);
      headers['signature-input'] = `nexus=${signatureParams}`;
      headers['signature'] = `nexus=:${ed(KEYS.authority)(Buffer.from(base)).toString('base64')}:`;
      return { status, headers, body_base64: Buffer.from('[{"id":1}]').toString('base64') };
    };
    const addRelayed = (id, description, message, expected, request = REQ) =>
      vectors.push({
        id,
        kind: 'nexus-relayed-response',
        description,
        requirement: 'RESP-RELAYED',
        now: NOW,
        message,
        request,
        authority_jwks: AUTHORITY_JWKS,
        expected:
          expected === 'accept' ? { verdict: 'accept' } : { verdict: 'reject', code: expected },
      });
    addRelayed('relayed-signed', 'an upstream 200 relayed and signed', relayed(), 'accept');
    addRelayed(
      'relayed-no-content-type',
      'an upstream 204 without Content-Type',
      { ...relayed(204, REQ.nonce, undefined), body_base64: '' },
      'accept',
    );
    {
      const m = relayed();
      m.headers['signature-input'] =
        `sig1=("@status");created=${NOW};keyid="upstream-key", ${m.headers['signature-input']}`;
      m.headers['signature'] = `sig1=:AAAA:, ${m.headers['signature']}`;
      addRelayed(
        'relayed-upstream-signature-kept',
        "the upstream's own signature member next to Nexus's",
        m,
        'accept',
      );
    }
    {
      const m = relayed();
      m.body_base64 = Buffer.from('[{"id":2}]').toString('base64');
      addRelayed('relayed-body-not-covered', 'the body is not covered (streamed)', m, 'accept');
    }
    {
      const m = relayed();
      delete m.headers.signature;
      delete m.headers['signature-input'];
      delete m.headers['nexus-origin'];
      addRelayed('relayed-unsigned', 'an answer without a Nexus signature', m, 'signature_missing');
    }
    addRelayed(
      'relayed-other-request',
      'signed for another request (wimse-req-nonce of another nonce)',
      relayed(200, fixed('nonce:another-relayed')),
      'signature_invalid',
    );
    {
      const m = relayed();
      m.status = 401;
      addRelayed('relayed-status-changed', 'status changed after signing', m, 'signature_invalid');
    }
    {
      const m = relayed();
      m.headers['content-type'] = 'text/html';
      addRelayed(
        'relayed-content-type-changed',
        'Content-Type changed after signing',
        m,
        'signature_invalid',
      );
    }
    {
      const m = relayed();
      m.headers['nexus-error'] = 'signature_expired';
      addRelayed(
        'relayed-error-added',
        'Nexus-Error added to a relayed answer',
        m,
        'signature_invalid',
      );
    }
    {
      const m = relayed();
      m.headers['nexus-origin'] = 'nexus';
      addRelayed('relayed-origin-changed', 'Nexus-Origin changed', m, 'signature_invalid');
    }
    {
      const m = relayed();
      delete m.headers['nexus-origin'];
      addRelayed('relayed-origin-missing', 'signed, without Nexus-Origin', m, 'signature_invalid');
    }
  }

  // Repeated field lines: one code for every field the profile reads (spec §8 step 2).
  for (const [id, name, extra] of [
    ['repeated-lease-field', 'workload-identity-token', null],
    ['repeated-intent-field', 'nexus-intent', '"a second purpose"'],
  ]) {
    add(
      id,
      'FIELD-SINGLE',
      `${name} sent as two field lines`,
      mutate(await build(id), (i) => {
        const pairs = Object.entries(i.headers);
        pairs.push([name, extra ?? i.headers[name]]);
        i.headers = pairs;
      }),
      'request_invalid',
    );
  }

  // Window.
  add(
    'created-in-future',
    'SIG-CREATED-FUTURE',
    'created 60 s ahead',
    await build('created-in-future', { created: NOW + 60 }),
    'signature_invalid',
  );
  add(
    'window-too-long',
    'SIG-WINDOW',
    'expires - created = 61',
    await build('window-too-long', { created: NOW - 2, expires: NOW + 59 }),
    'signature_invalid',
  );
  add(
    'expires-before-created',
    'SIG-WINDOW',
    'expires before created',
    await build('expires-before-created', { created: NOW - 2, expires: NOW - 3 }),
    'signature_invalid',
  );
  add(
    'signature-expired',
    'SIG-EXPIRED',
    'expires 10 s ago (skew 5 s)',
    await build('signature-expired', { created: NOW - 40, expires: NOW - 10 }),
    'signature_expired',
  );
  add(
    'expires-after-lease-exp',
    'SIG-LEASE-EXP',
    'signature expires after the lease exp',
    await build('expires-after-lease-exp', {
      lease: lease('expires-after-lease-exp', { payload: { exp: NOW + 10 } }),
      created: NOW - 2,
      expires: NOW + 28,
    }),
    'signature_invalid',
  );

  // Body digest.
  add(
    'digest-missing',
    'DIGEST-REQUIRED',
    'body without Content-Digest',
    await build('digest-missing', {
      body: BODY,
      digest: null,
      components: [...REQUIRED, 'content-type'],
    }),
    'digest_missing',
  );
  add(
    'digest-mismatch',
    'DIGEST-MATCH',
    'Content-Digest of another body',
    await build('digest-mismatch', { body: BODY, digest: await createContentDigest('{}') }),
    'digest_mismatch',
  );
  add(
    'digest-md5',
    'DIGEST-ALG',
    'Content-Digest with md5 only',
    await build('digest-md5', {
      body: BODY,
      digest: `md5=:${createHash('md5').update(BODY).digest('base64')}:`,
    }),
    'digest_invalid',
  );
  add(
    'digest-sha1',
    'DIGEST-ALG',
    'Content-Digest with sha (SHA-1) only',
    await build('digest-sha1', {
      body: BODY,
      digest: `sha=:${createHash('sha1').update(BODY).digest('base64')}:`,
    }),
    'digest_invalid',
  );
  add(
    'digest-malformed',
    'DIGEST-ALG',
    'Content-Digest sha-256 value is not a byte sequence',
    await build('digest-malformed', { body: BODY, digest: 'sha-256="abc"' }),
    'digest_invalid',
  );
  add(
    'digest-one-of-two-wrong',
    'DIGEST-MATCH',
    'sha-256 matches but sha-512 does not',
    await build('digest-one-of-two-wrong', {
      body: BODY,
      digest: `${await createContentDigest(BODY)}, ${await createContentDigest('{}', 'sha-512')}`,
    }),
    'digest_mismatch',
  );

  // Tampering after signing.
  add(
    'tampered-method',
    'SIG-VERIFY',
    'signed GET sent as DELETE',
    mutate(await build('tampered-method'), (i) => (i.method = 'DELETE')),
    'signature_invalid',
  );
  add(
    'tampered-path',
    'SIG-VERIFY',
    'path changed after signing (wimse-aud adjusted too)',
    await (async () => {
      const b = await build('tampered-path');
      const other = 'https://nexus.example/github/repos/acme/secrets/issues';
      return mutate(b, (i) => {
        i.url = `${other}?state=open`;
        i.headers['signature-input'] = i.headers['signature-input'].replace(
          URL_GET.split('?')[0],
          other,
        );
      });
    })(),
    'signature_invalid',
  );
  add(
    'tampered-query',
    'SIG-VERIFY',
    'query changed after signing',
    mutate(
      await build('tampered-query'),
      (i) => (i.url = i.url.replace('state=open', 'state=all')),
    ),
    'signature_invalid',
  );
  add(
    'tampered-body',
    'DIGEST-MATCH',
    'body changed after signing',
    mutate(
      await build('tampered-body', { body: BODY }),
      (i) => (i.body_base64 = Buffer.from(BODY.replace('bug', 'wontfix')).toString('base64')),
    ),
    'digest_mismatch',
  );
  add(
    'tampered-digest-and-body',
    'SIG-VERIFY',
    'body and its Content-Digest both replaced after signing',
    await (async () => {
      const other = '{"title":"pwned"}';
      const d = await createContentDigest(other);
      return mutate(await build('tampered-digest-and-body', { body: BODY }), (i) => {
        i.body_base64 = Buffer.from(other).toString('base64');
        i.headers['content-digest'] = d;
      });
    })(),
    'signature_invalid',
  );
  add(
    'tampered-intent',
    'SIG-VERIFY',
    'Nexus-Intent changed after signing',
    mutate(
      await build('tampered-intent'),
      (i) => (i.headers['nexus-intent'] = serializeSfString('delete everything')),
    ),
    'signature_invalid',
  );
  add(
    'tampered-signature',
    'SIG-VERIFY',
    'one signature byte flipped',
    mutate(await build('tampered-signature'), (i) => {
      const m = /^wimse=:(.*):$/.exec(i.headers.signature);
      const bytes = Buffer.from(m[1], 'base64');
      bytes[10] ^= 1;
      i.headers.signature = `wimse=:${bytes.toString('base64')}:`;
    }),
    'signature_invalid',
  );
  add(
    'tampered-created',
    'SIG-VERIFY',
    'created parameter changed after signing',
    mutate(
      await build('tampered-created'),
      (i) =>
        (i.headers['signature-input'] = i.headers['signature-input'].replace(
          `created=${NOW - 2}`,
          `created=${NOW - 1}`,
        )),
    ),
    'signature_invalid',
  );

  return vectors;
}

// --- write and self-check ----------------------------------------------------------------
for (const [profile, folder] of [
  ['nexus/1', dir],
  ['nexus/1.1', join(root, 'vectors', 'nexus-1.1')],
]) {
  const vectors = await suite(profile);
  mkdirSync(folder, { recursive: true });
  for (const f of readdirSync(folder))
    if (f !== 'keys.json' && f.endsWith('.json')) rmSync(join(folder, f));
  let failed = 0;
  for (const v of vectors) {
    writeFileSync(join(folder, `${v.id}.json`), `${JSON.stringify(v, null, 2)}\n`);
    const r = await runConformanceVector(v);
    if (!r.passed) {
      failed++;
      console.log(`FAIL ${profile} ${v.id}: ${r.detail}`);
    }
  }
  console.log(`${vectors.length} ${profile} vectors written, ${failed} failing`);
}
