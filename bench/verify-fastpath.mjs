// Micro-benchmark of request verification CPU (issue 14 step 2): the proxy's verify stage
// (verifyRequestSignature, then verifyRequestBody with the server's digest function) on
// the strict signature path (`fastPath: false`) against the fast path for the profile's
// fixed header shape, in one process. CPU time, not wall time: each batch is measured with
// process.cpuUsage() (user + system, all threads, so the threadpool's Ed25519 verify is
// included), the two variants alternate batch by batch (order swapped every round), and
// the medians of the rounds are reported. A third variant, `BASELINE=DIR`, loads another
// build of @nexus-proxy/protocol (a `dist` directory, e.g. a copy of the build before a change)
// and alternates it too. The hooks are the proxy's (packages/server proxy/verify-request.ts):
// a synchronous Authority key lookup and revocation check, and a fourth variant with the
// proxy's signature check (node:crypto's async one-shot verify instead of WebCrypto's).
//
//   node bench/verify-fastpath.mjs                 # strict vs fast, this build
//   BASELINE=node_modules/.baseline/dist node bench/verify-fastpath.mjs
//   VERIFY_ROUNDS=15 VERIFY_BATCH=400 VERIFY_ALG=ecdsa-p256 node bench/verify-fastpath.mjs
//
// Not part of `npm run bench`: a developer's A/B tool, robust on a loaded machine.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as current from '../packages/protocol/dist/index.js';
import { nodeSignatureVerify } from '../packages/server/dist/proxy/verify-request.js';

const ROUNDS = Number(process.env.VERIFY_ROUNDS ?? 15);
const BATCH = Number(process.env.VERIFY_BATCH ?? 400);
const ALG = process.env.VERIFY_ALG ?? 'ed25519';
const PROXY = 'https://nexus.example';
const URL_ = `${PROXY}/github/repos/acme/widgets/issues?state=open`;
const BODY = JSON.stringify({ title: 'Widget jams at speed', labels: ['bug'] });
// What Node's req.headers holds for a typical SDK request (lower-case names).
const BASE_HEADERS = {
  host: 'nexus.example',
  'user-agent': 'nexus-sdk/1.0',
  accept: '*/*',
  'accept-encoding': 'gzip, deflate',
  connection: 'keep-alive',
  'content-type': 'application/json',
  'content-length': String(Buffer.byteLength(BODY)),
};

const authority = generateKeyPairSync('ed25519');
const agent = await current.generateAgentKey(ALG);
// One fixed clock for signing and verifying: a long run on a loaded machine must not
// outlive the 30 s signature window.
const NOW_MS = Date.now();
const now = Math.floor(NOW_MS / 1000);
const lease = await current.signLease(
  {
    iss: PROXY,
    aud: PROXY,
    sub: current.agentSub('nexus.example', 'bench'),
    iat: now - 5,
    nbf: now - 5,
    exp: now + 900,
    jti: 'bench-lease-0123456789abcd',
    scope: 'bench',
    cnf: { jwk: agent.publicJwk },
  },
  authority.privateKey,
  { alg: 'EdDSA', kid: 'k1' },
);
// Distinct signed requests (distinct nonces), as a proxy sees them.
const requests = [];
for (let i = 0; i < 64; i++) {
  const added = await current.signRequest({
    method: 'POST',
    url: URL_,
    headers: BASE_HEADERS,
    body: BODY,
    lease,
    key: agent.privateKey,
    intent: 'file a bug',
    now: () => NOW_MS,
  });
  requests.push({ ...BASE_HEADERS, ...added });
}

// The server's digest function (packages/server/src/util/digest.ts): node:crypto for small bodies.
const serverDigest = (alg, body) =>
  createHash(alg === 'sha-256' ? 'sha256' : 'sha512')
    .update(body)
    .digest();
const bodyBytes = Buffer.from(BODY);

/** The proxy's verify stage: lease and signature, then the body's Content-Digest. */
function verifier(lib, fastPath, verifySignature) {
  return async (headers) => {
    const verified = await lib.verifyRequestSignature({
      method: 'POST',
      url: URL_,
      headers,
      issuer: PROXY,
      audience: PROXY,
      getAuthorityKey: () => authority.publicKey,
      now: () => NOW_MS,
      isRevoked: () => false,
      fastPath,
      ...(verifySignature === undefined ? {} : { verifySignature }),
    });
    await lib.verifyRequestBody(verified, headers, bodyBytes, serverDigest);
    return verified;
  };
}

const variants = [
  { name: 'strict (fastPath: false)', verify: verifier(current, false) },
  { name: 'fast (default)', verify: verifier(current, true) },
  {
    name: 'fast + node:crypto verify (proxy)',
    verify: verifier(current, true, nodeSignatureVerify),
  },
];
if (process.env.BASELINE) {
  const dir = resolve(process.env.BASELINE);
  const baseline = await import(pathToFileURL(`${dir}/index.js`).href);
  variants.unshift({
    name: `baseline build (${process.env.BASELINE})`,
    verify: verifier(baseline),
  });
}

/** CPU ns the main (JavaScript) thread has run so far (Linux schedstat; 0 elsewhere). */
function mainThreadNs() {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

/**
 * CPU µs per verification over one batch (sequential: one request at a time), whole
 * process and main thread alone (the rest is the threadpool's).
 */
async function batch(verify) {
  const start = process.cpuUsage();
  const main0 = mainThreadNs();
  for (let i = 0; i < BATCH; i++) await verify(requests[i % requests.length]);
  const main = (mainThreadNs() - main0) / 1000 / BATCH;
  const used = process.cpuUsage(start);
  return { cpu: (used.user + used.system) / BATCH, main };
}

// The floor: the agent signature check and the body hash alone (WebCrypto verify of the
// same base, createHash of the body), so that the figures above it are the JS bookkeeping
// each path adds.
{
  const v = await variants.at(-1).verify(requests[0]);
  const key = await current.importJwk(agent.publicJwk, v.algorithm, 'verify');
  const sig = current.parseSignatures({ headers: requests[0] }).get('wimse').signature;
  const data = Buffer.from(v.signatureBase);
  variants.push({
    name: 'floor: verifyBytes + body hash only',
    verify: async () => {
      if (!(await current.verifyBytes(v.algorithm, key, data, sig))) throw new Error('floor');
      serverDigest('sha-256', bodyBytes);
      return { agent: 'bench' };
    },
  });
}

for (const v of variants) {
  const r = await v.verify(requests[0]); // throws if the setup is wrong
  if (r.agent !== 'bench') throw new Error('unexpected verification result');
  for (let i = 0; i < 3; i++) await batch(v.verify); // warm-up
  v.samples = [];
  v.main = [];
}
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const v of order) {
    const r = await batch(v.verify);
    v.samples.push(r.cpu);
    v.main.push(r.main);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ref = median(variants[0].samples);
const refMain = median(variants[0].main);
console.log(
  `verify stage (signature + body digest), ${ALG} agent, POST with body; ${ROUNDS} rounds x ${BATCH} requests,` +
    ` alternating; CPU µs per request (process user+system; main thread alone from schedstat), median of rounds`,
);
for (const v of variants) {
  const m = median(v.samples);
  console.log(
    `${v.name.padEnd(44)} ${m.toFixed(1).padStart(8)} µs  ratio to first ${(m / ref).toFixed(3)}` +
      `  [min ${Math.min(...v.samples).toFixed(1)}, max ${Math.max(...v.samples).toFixed(1)}]` +
      `  main thread ${median(v.main).toFixed(1)} µs (ratio ${(median(v.main) / refMain).toFixed(3)})`,
  );
}
