// The proxy's agent signature check (node:crypto's async one-shot verify, issue 14 step 2)
// gives WebCrypto's verdict: deterministic cases for both agent algorithms, then random
// bases and signatures mutated byte by byte.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  generateAgentKey,
  importJwk,
  signBytes,
  webCryptoVerify,
  type AgentKeyPair,
  type AgentSignatureAlgorithm,
  type CryptoKey,
} from '@nexus-proxy/protocol';
import { nodeSignatureVerify } from './verify-request.js';

const encoder = new TextEncoder();

interface Agent {
  pair: AgentKeyPair;
  /** The public key as the proxy imports it from `cnf.jwk` (usage `verify` only). */
  verifyKey: CryptoKey;
}

async function agent(alg: 'ed25519' | 'ecdsa-p256'): Promise<Agent> {
  const pair = await generateAgentKey(alg);
  const verifyKey = await importJwk(
    pair.publicJwk as Parameters<typeof importJwk>[0],
    pair.algorithm,
    'verify',
  );
  return { pair, verifyKey };
}

const agents = {
  ed25519: await agent('ed25519'),
  'ecdsa-p256-sha256': await agent('ecdsa-p256'),
};
const others = {
  ed25519: await agent('ed25519'),
  'ecdsa-p256-sha256': await agent('ecdsa-p256'),
};

const sign = async (alg: AgentSignatureAlgorithm, base: string) =>
  signBytes(alg, agents[alg].pair.privateKey, encoder.encode(base));

/** Both verdicts; the test asserts they agree and returns the proxy's. */
async function verdict(
  alg: AgentSignatureAlgorithm,
  key: CryptoKey,
  base: string,
  sig: Uint8Array,
): Promise<boolean> {
  const [node, web] = await Promise.all([
    nodeSignatureVerify(alg, key, base, sig),
    webCryptoVerify(alg, key, base, sig),
  ]);
  expect(node).toBe(web);
  return node;
}

describe.each(['ed25519', 'ecdsa-p256-sha256'] as const)('nodeSignatureVerify (%s)', (alg) => {
  const base = '"@method": POST\n"@path": /github/repos\n"@signature-params": ("@method");x=1';

  it('accepts a valid signature, twice (the second with the cached key object)', async () => {
    const sig = await sign(alg, base);
    expect(await verdict(alg, agents[alg].verifyKey, base, sig)).toBe(true);
    expect(await verdict(alg, agents[alg].verifyKey, base, sig)).toBe(true);
  });

  it('verifies the UTF-8 bytes of the base', async () => {
    const text = `${base}\n"nexus-intent": "caf\u00e9 \u{1f600}"`;
    const sig = await sign(alg, text);
    expect(await verdict(alg, agents[alg].verifyKey, text, sig)).toBe(true);
    expect(await verdict(alg, agents[alg].verifyKey, text.normalize('NFD'), sig)).toBe(false);
  });

  it('refuses another base, a changed signature, a wrong length and another key', async () => {
    const sig = await sign(alg, base);
    const key = agents[alg].verifyKey;
    expect(await verdict(alg, key, `${base} `, sig)).toBe(false);
    const flipped = Uint8Array.from(sig);
    flipped[10]! ^= 1;
    expect(await verdict(alg, key, base, flipped)).toBe(false);
    expect(await verdict(alg, key, base, sig.subarray(0, 63))).toBe(false);
    expect(await verdict(alg, key, base, Uint8Array.from([...sig, 0]))).toBe(false);
    expect(await verdict(alg, key, base, new Uint8Array(0))).toBe(false);
    expect(await verdict(alg, key, base, new Uint8Array(64))).toBe(false);
    expect(await verdict(alg, others[alg].verifyKey, base, sig)).toBe(false);
  });

  it('a key of the other algorithm, or not for verifying, is refused (WebCrypto decides)', async () => {
    const sig = await sign(alg, base);
    const wrong = alg === 'ed25519' ? 'ecdsa-p256-sha256' : 'ed25519';
    // A key not seen yet, then the same key once its key object is cached for `alg`.
    const fresh = await agent(alg === 'ed25519' ? 'ed25519' : 'ecdsa-p256');
    const freshSig = await signBytes(alg, fresh.pair.privateKey, encoder.encode(base));
    expect(await verdict(wrong, fresh.verifyKey, base, freshSig)).toBe(false);
    expect(await verdict(alg, fresh.verifyKey, base, freshSig)).toBe(true);
    expect(await verdict(wrong, fresh.verifyKey, base, freshSig)).toBe(false);
    expect(await verdict(wrong, agents[alg].verifyKey, base, sig)).toBe(false);
    // The private key: usage `sign`, type private.
    expect(await nodeSignatureVerify(alg, agents[alg].pair.privateKey, base, sig)).toBe(false);
  });

  it('random bases and byte mutations of the signature: the same verdict as WebCrypto', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 300 }),
        fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { nil: undefined }),
        async (text, mutation) => {
          const sig = await sign(alg, text);
          if (mutation !== undefined) sig[mutation[0] % sig.length]! ^= mutation[1];
          expect(await verdict(alg, agents[alg].verifyKey, text, sig)).toBe(mutation === undefined);
        },
      ),
      { numRuns: 100 },
    );
  });
});
