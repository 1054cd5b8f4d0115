// Signed Nexus responses (issue 16, spec §10.4): the base a node signs, and what an agent
// accepts: bound to its request's nonce, covering the status, the request, Nexus-Error and
// the body; anything else is not Nexus's word.
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { serializeByteSequence } from './structured-fields.js';
import {
  responseSignatureBase,
  responseSignatureParams,
  verifyResponseSignature,
} from './response-signature.js';
import { code } from './test/code.js';

const NOW = 1_785_000_000;
const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keys = [
  { ...ed.publicKey.export({ format: 'jwk' }), kid: 'k-ed', alg: 'EdDSA', use: 'sig' },
  { ...ec.publicKey.export({ format: 'jwk' }), kid: 'k-ec', alg: 'ES256', use: 'sig' },
];
const REQUEST = {
  method: 'POST',
  url: 'https://nexus.example/github/repos?x=1',
  nonce: 'n'.repeat(22),
};
const BODY = '{"code":"policy_denied"}';

function signed(kid: 'k-ed' | 'k-ec', o: { status?: number; requestNonce?: string } = {}) {
  const headers: Record<string, string> = {
    'content-type': 'application/problem+json',
    'nexus-request-id': 'req123',
    'nexus-error': 'policy_denied',
    'content-digest': `sha-256=:${createHash('sha256').update(BODY).digest('base64')}:`,
  };
  const params = responseSignatureParams({
    created: NOW,
    nonce: 'r'.repeat(22),
    kid,
    requestNonce: o.requestNonce ?? REQUEST.nonce,
  });
  const { base, signatureParams } = responseSignatureBase(
    { status: o.status ?? 403, headers },
    { method: 'POST', url: 'https://elsewhere.invalid/github/repos?x=1' },
    params,
  );
  const sig =
    kid === 'k-ed'
      ? sign(null, Buffer.from(base), ed.privateKey)
      : sign('sha256', Buffer.from(base), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
  headers['signature-input'] = `nexus=${signatureParams}`;
  headers['signature'] = `nexus=${serializeByteSequence(new Uint8Array(sig))}`;
  return headers;
}

const verify = (
  headers: Record<string, string>,
  o: { status?: number; body?: string; nonce?: string } = {},
) =>
  verifyResponseSignature({
    status: o.status ?? 403,
    headers,
    body: o.body ?? BODY,
    request: { ...REQUEST, nonce: o.nonce ?? REQUEST.nonce },
    keys,
    now: () => NOW * 1000,
  });

describe('Nexus response signatures (issue 16)', () => {
  it.each(['k-ed', 'k-ec'] as const)('a signed refusal verifies (%s)', async (kid) => {
    expect(await verify(signed(kid))).toEqual({ kid });
  });
  it('covers the status, Nexus-Error, the body, the request and its nonce', async () => {
    const h = signed('k-ed');
    expect(await code(verify(h, { status: 401 }))).toBe('signature_invalid');
    expect(await code(verify({ ...h, 'nexus-error': 'signature_expired' }))).toBe(
      'signature_invalid',
    );
    expect(await code(verify(h, { body: '{"code":"x"}' }))).toBe('digest_mismatch');
    expect(await code(verify(h, { nonce: 'm'.repeat(22) }))).toBe('signature_invalid');
    expect(
      await code(
        verifyResponseSignature({
          status: 403,
          headers: h,
          body: BODY,
          request: { ...REQUEST, url: 'https://nexus.example/github/other?x=1' },
          keys,
          now: () => NOW * 1000,
        }),
      ),
    ).toBe('signature_invalid');
  });
  it('an unsigned or differently keyed "refusal" is not Nexus', async () => {
    const { signature: _s, 'signature-input': _i, ...unsigned } = signed('k-ed');
    expect(await code(verify(unsigned))).toBe('signature_missing');
    const h = signed('k-ed');
    expect(
      await code(
        verifyResponseSignature({
          status: 403,
          headers: h,
          body: BODY,
          request: REQUEST,
          keys: [keys[1]!],
          now: () => NOW * 1000,
        }),
      ),
    ).toBe('signature_invalid');
    // An agent request's own tag is not a response signature.
    const asRequest = {
      ...h,
      'signature-input': h['signature-input']!.replace(
        'nexus-response',
        'wimse-workload-to-workload',
      ),
    };
    expect(await code(verify(asRequest))).toBe('signature_missing');
  });
  it('a signature for another request (its nonce) or an old one is refused', async () => {
    expect(await code(verify(signed('k-ed', { requestNonce: 'o'.repeat(22) })))).toBe(
      'signature_invalid',
    );
    const h = signed('k-ed');
    expect(
      await code(
        verifyResponseSignature({
          status: 403,
          headers: h,
          body: BODY,
          request: REQUEST,
          keys,
          now: () => (NOW + 120) * 1000,
        }),
      ),
    ).toBe('signature_expired');
  });
});
