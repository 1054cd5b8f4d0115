// Pre-signing: the load generators replay requests signed here beforehand, so no signing
// happens while load is measured. Every request gets its own nonce (the Nexus replay cache
// refuses a repeat); request i is signed with lease i mod leases.length. Output: one line
// per request, tab-separated header name/value pairs (see requests.lua, loadgen.mjs).
import { createWriteStream } from 'node:fs';
import { signRequest } from '../../packages/protocol/dist/index.js';

const ALG_PARAMS = {
  ed25519: { name: 'Ed25519' },
  'ecdsa-p256': { name: 'ECDSA', namedCurve: 'P-256' },
};

/** Imports the private keys of launcher-minted leases (once per lease). */
export async function importLeaseKeys(leases) {
  const out = [];
  for (const l of leases) {
    const key = await globalThis.crypto.subtle.importKey(
      'jwk',
      l.privateJwk,
      ALG_PARAMS[l.alg],
      false,
      ['sign'],
    );
    out.push({ lease: l.lease, key, agent: l.agent, alg: l.alg });
  }
  return out;
}

/**
 * Writes `count` signed requests to `file`. `url` is the absolute proxy URL (the signature
 * audience); the same path is then sent to every compared path.
 */
export async function presign({ file, count, keys, method, url, body, intent = 'bench' }) {
  const out = createWriteStream(file);
  const headers = body && body.length > 0 ? { 'content-type': 'application/json' } : {};
  const BATCH = 512;
  for (let start = 0; start < count; start += BATCH) {
    const n = Math.min(BATCH, count - start);
    const signed = await Promise.all(
      Array.from({ length: n }, (_, j) => {
        const k = keys[(start + j) % keys.length];
        return signRequest({
          method,
          url,
          headers,
          body,
          lease: k.lease,
          key: k.key,
          intent,
          ttlSeconds: 60,
        });
      }),
    );
    let chunk = '';
    for (const s of signed) {
      const all = { ...headers, ...s };
      chunk +=
        Object.entries(all)
          .map(([k, v]) => `${k}\t${v}`)
          .join('\t') + '\n';
    }
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
}
