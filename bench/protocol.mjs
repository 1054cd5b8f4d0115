// Bench scenario "protocol": Nexus profile signRequest / verifyRequest rates with Ed25519 and
// P-256 agent keys, beside the raw node:crypto Ed25519 verify rate measured in the same run.
// Writes bench/results/protocol.json and protocol.md.
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SignJWT, generateKeyPair } from 'jose';
import {
  agentSub,
  generateAgentKey,
  signRequest,
  verifyRequest,
} from '../packages/protocol/dist/index.js';

export const name = 'protocol';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 1500);
const CONCURRENCY = 16;
const ISSUER = 'https://nexus.example';
const URL_ = 'https://nexus.example/github/repos/acme/widgets/issues?state=open';
const BODY = JSON.stringify({ title: 'Widget jams at speed', labels: ['bug'] });

/** Runs `op` for DURATION_MS with CONCURRENCY in flight; returns ops per second. */
async function rate(op) {
  for (let i = 0; i < 50; i++) await op(); // warm-up
  let count = 0;
  const start = performance.now();
  const end = start + DURATION_MS;
  const worker = async () => {
    while (performance.now() < end) {
      await op();
      count++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return (count * 1000) / (performance.now() - start);
}

function rawEd25519VerifyRate() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const data = Buffer.from('"@method": POST\n"@request-target": /github/x\n'.repeat(8));
  const sig = sign(null, data, privateKey);
  for (let i = 0; i < 200; i++) verify(null, data, publicKey, sig);
  let count = 0;
  const start = performance.now();
  const end = start + DURATION_MS;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) verify(null, data, publicKey, sig);
    count += 100;
  }
  return (count * 1000) / (performance.now() - start);
}

async function scenario(alg) {
  const authority = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const agent = await generateAgentKey(alg);
  const now = Math.floor(Date.now() / 1000);
  const lease = await new SignJWT({
    sub: agentSub('nexus.example', 'bench'),
    jti: 'bench-lease-0123456789abcd',
    scope: 'bench',
    cnf: { jwk: agent.publicJwk },
    nbf: now - 5,
  })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: 'wit+jwt' })
    .setIssuer(ISSUER)
    .setAudience(ISSUER)
    .setIssuedAt(now - 5)
    .setExpirationTime(now + 900)
    .sign(authority.privateKey);
  const base = { 'content-type': 'application/json' };
  const signOnce = () =>
    signRequest({
      method: 'POST',
      url: URL_,
      headers: base,
      body: BODY,
      lease,
      key: agent.privateKey,
      intent: 'bench',
    });
  const signed = { ...base, ...(await signOnce()) };
  const verifyOnce = () =>
    verifyRequest({
      method: 'POST',
      url: URL_,
      headers: signed,
      body: BODY,
      issuer: ISSUER,
      audience: ISSUER,
      getAuthorityKey: async () => authority.publicKey,
    });
  await verifyOnce(); // throws if the setup is wrong
  return { sign: await rate(signOnce), verify: await rate(verifyOnce) };
}

export async function run() {
  const raw = rawEd25519VerifyRate();
  const ed = await scenario('ed25519');
  const p256 = await scenario('ecdsa-p256');
  const rows = [
    { op: 'node:crypto Ed25519 verify (raw, sync)', ops: raw },
    { op: 'signRequest, Ed25519 agent', ops: ed.sign },
    { op: 'verifyRequest, Ed25519 agent (lease + signature + digest)', ops: ed.verify },
    { op: 'signRequest, P-256 agent', ops: p256.sign },
    { op: 'verifyRequest, P-256 agent (lease + signature + digest)', ops: p256.verify },
  ].map((r) => ({
    ...r,
    ops: Math.round(r.ops),
    ratio_to_raw_verify: Number((r.ops / raw).toFixed(3)),
  }));
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    duration_ms_per_op: DURATION_MS,
    concurrency: CONCURRENCY,
    body_bytes: Buffer.byteLength(BODY),
  };
  const width = Math.max(...rows.map((r) => r.op.length));
  console.log(`${'operation'.padEnd(width)}  ${'ops/s'.padStart(9)}  ratio`);
  for (const r of rows) {
    console.log(
      `${r.op.padEnd(width)}  ${String(r.ops).padStart(9)}  ${r.ratio_to_raw_verify.toFixed(3)}`,
    );
  }
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'protocol.json'), `${JSON.stringify({ meta, rows }, null, 2)}\n`);
  const md = [
    '# Protocol benchmark',
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpus}; ${DURATION_MS} ms per operation, ${CONCURRENCY} in flight; POST with a ${meta.body_bytes}-byte JSON body.`,
    'Ratio is against the raw node:crypto Ed25519 verify rate of the same run (verifyRequest does two signature verifications: the lease and the request).',
    '',
    '| operation | ops/s | ratio to raw Ed25519 verify |',
    '| --- | ---: | ---: |',
    ...rows.map((r) => `| ${r.op} | ${r.ops} | ${r.ratio_to_raw_verify.toFixed(3)} |`),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'protocol.md'), md);
  return { meta, rows };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await run();
