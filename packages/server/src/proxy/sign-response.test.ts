// Signed relayed answers (spec §10.4 [RESP-RELAYED], issues 14 and 16): what the proxy adds
// to a relayed head verifies with the Authority JWKS as the SDK checks it, for both key
// algorithms, and a signer that cannot sign fails closed (an error, no half-signed head).
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isNexusError, verifyRelayedResponseSignature } from '@nexus-proxy/protocol';
import {
  installResponseSigner,
  signRelayedHeaders,
  type ResponseSigningKey,
} from './sign-response.js';

const NOW = 1_785_000_000_000;
const REQUEST_NONCE = 'q'.repeat(22);
const req = { method: 'POST', url: '/echo/items?page=2' } as IncomingMessage;

function keyOf(alg: 'EdDSA' | 'ES256', kid: string) {
  const pair =
    alg === 'EdDSA'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signing: ResponseSigningKey = { kid, alg, privateKey: pair.privateKey };
  const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  return { signing, jwk };
}

const flat = (headers: Record<string, string | string[]>) =>
  Object.entries(headers).flatMap(([k, v]) =>
    (typeof v === 'string' ? [v] : v).map((line) => [k, line] as [string, string]),
  );

const verify = (headers: Record<string, string | string[]>, keys: Record<string, unknown>[]) =>
  verifyRelayedResponseSignature({
    status: 201,
    headers: flat(headers),
    request: {
      method: 'POST',
      url: 'https://proxy.example/echo/items?page=2',
      nonce: REQUEST_NONCE,
    },
    keys,
    now: () => NOW,
  });

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isNexusError(e) ? e.code : 'not a NexusError';
  }
}

afterEach(() => installResponseSigner(undefined));

describe('signRelayedHeaders (spec §10.4 [RESP-RELAYED])', () => {
  it.each(['EdDSA', 'ES256'] as const)('signs a head the SDK verifies (%s)', async (alg) => {
    const { signing, jwk } = keyOf(alg, `k-${alg}`);
    installResponseSigner({ key: () => signing, clock: () => NOW });
    for (const contentType of ['application/json', undefined]) {
      const headers: Record<string, string | string[]> = { 'nexus-request-id': 'req-1' };
      if (contentType !== undefined) headers['content-type'] = contentType;
      signRelayedHeaders(req, 201, headers, 'req-1', REQUEST_NONCE);
      expect(headers['nexus-origin']).toBe('upstream');
      expect(await verify(headers, [jwk])).toEqual({ kid: `k-${alg}` });
      // Another status, or another Content-Type, does not verify.
      expect(
        await codeOf(
          verifyRelayedResponseSignature({
            status: 200,
            headers: flat(headers),
            request: {
              method: 'POST',
              url: 'https://p.example/echo/items?page=2',
              nonce: REQUEST_NONCE,
            },
            keys: [jwk],
            now: () => NOW,
          }),
        ),
      ).toBe('signature_invalid');
      expect(await codeOf(verify({ ...headers, 'content-type': 'text/html' }, [jwk]))).toBe(
        'signature_invalid',
      );
    }
  });

  it('every signature has its own nonce, and a rotated key signs from the next answer on', async () => {
    const first = keyOf('EdDSA', 'k-first');
    const second = keyOf('ES256', 'k-second');
    let active = first.signing;
    installResponseSigner({ key: () => active, clock: () => NOW });
    const a: Record<string, string | string[]> = { 'nexus-request-id': 'r' };
    const b: Record<string, string | string[]> = { 'nexus-request-id': 'r' };
    signRelayedHeaders(req, 201, a, 'r', REQUEST_NONCE);
    signRelayedHeaders(req, 201, b, 'r', REQUEST_NONCE);
    const nonce = (h: Record<string, string | string[]>) =>
      /;nonce="([^"]+)"/.exec(String(h['signature-input']))?.[1];
    expect(nonce(a)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(nonce(a)).not.toBe(nonce(b));
    active = second.signing;
    const c: Record<string, string | string[]> = { 'nexus-request-id': 'r' };
    signRelayedHeaders(req, 201, c, 'r', REQUEST_NONCE);
    expect(await verify(c, [first.jwk, second.jwk])).toEqual({ kid: 'k-second' });
  });

  it('fails closed: a signer that cannot sign rejects with internal_error and adds no signature', async () => {
    // An X25519 key cannot sign; a node without an active key throws from key().
    const x25519: KeyObject = generateKeyPairSync('x25519').privateKey;
    const broken: Array<() => ResponseSigningKey> = [
      () => ({ kid: 'k-x', alg: 'EdDSA', privateKey: x25519 }),
      () => {
        throw new Error('no active key');
      },
    ];
    for (const key of broken) {
      installResponseSigner({ key, clock: () => NOW });
      const headers: Record<string, string | string[]> = {
        'content-type': 'application/json',
        'signature-input': 'up=("@status");created=1',
        signature: 'up=:AAAA:',
      };
      const signing = (async () => signRelayedHeaders(req, 201, headers, 'r', REQUEST_NONCE))();
      expect(await codeOf(signing)).toBe('internal_error');
      expect(headers['signature-input']).toBe('up=("@status");created=1');
      expect(headers['signature']).toBe('up=:AAAA:');
    }
  });

  it('without a signer, marks the answer as relayed and leaves it unsigned', async () => {
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json' };
    signRelayedHeaders(req, 201, headers, 'r', REQUEST_NONCE);
    expect(headers).toEqual({ 'content-type': 'application/json', 'nexus-origin': 'upstream' });
  });
});
