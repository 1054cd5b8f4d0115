// The cost of signing relayed answers (spec §10.4, issue 16): a loopback HTTP server that
// answers like the proxy's relay (scrubbed upstream head, 1 KiB JSON body), once unsigned
// and once with `signRelayedHeaders` (the function the pipeline calls, one signature per
// response), driven by an undici client at fixed concurrency. Rounds alternate between
// the two so that the machine's drift hits both alike; prints the medians of requests per
// second and of server CPU per response, and the signing call alone (µs of main-thread and
// of whole-process CPU per call, 64 calls in flight, EdDSA and ES256 Authority keys: the
// signature itself runs on the libuv threadpool). Not part of `npm run bench`.
//
// Usage: npx tsc -b && node bench/response-signing.mjs
// Env: BENCH_SIGN_ROUNDS (default 6), BENCH_SIGN_REQUESTS per round (default 20000).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import {
  installResponseSigner,
  signRelayedHeaders,
} from '../packages/server/dist/proxy/sign-response.js';

const ROUNDS = Number(process.env.BENCH_SIGN_ROUNDS ?? 6);
const REQUESTS = Number(process.env.BENCH_SIGN_REQUESTS ?? 20000);
const CONCURRENCY = 32;
const BODY = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const keyOf = (alg) => {
  const { privateKey } =
    alg === 'EdDSA'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid: randomBytes(12).toString('hex'), alg, privateKey };
};
const signerOf = (key) => ({ key: () => key, clock: Date.now });

let signed = false;
const nonce = randomBytes(16).toString('base64url');
const server = createServer(async (req, res) => {
  // What the relay writes: the scrubbed upstream head (signed first), then the body.
  const headers = { 'content-type': 'application/json', 'content-length': String(BODY.length) };
  res.setHeader('nexus-request-id', 'bench-request-id');
  if (signed) await signRelayedHeaders(req, 200, headers, 'bench-request-id', nonce);
  res.writeHead(200, headers);
  res.end(BODY);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
const pool = new Pool(origin, { connections: CONCURRENCY, pipelining: 1 });

async function round() {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < REQUESTS) {
        const r = await pool.request({ path: '/bench/items?page=1', method: 'GET' });
        await r.body.dump();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // Client and server share this process: CPU per response covers both, alike in A and B.
  return { rps: REQUESTS / seconds, cpuUs: (cpu.user + cpu.system) / REQUESTS };
}

const results = { unsigned: [], signed: [] };
installResponseSigner(signerOf(keyOf('EdDSA')));
await round(); // warm-up
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of i % 2 === 0 ? ['unsigned', 'signed'] : ['signed', 'unsigned']) {
    signed = mode === 'signed';
    results[mode].push(await round());
  }
}
await pool.close();
server.close();

// The signing call alone, per Authority key algorithm: CPU of the main (JavaScript) thread
// and of the whole process (the threadpool signs), 64 calls in flight.
const mainThreadUs = () => {
  const f = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 1e4;
};
const processUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const fakeReq = { method: 'GET', url: '/bench/items?page=1' };
const micro = {};
async function calls(n) {
  let started = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (started++ < n) {
        const headers = { 'content-type': 'application/json' };
        await signRelayedHeaders(fakeReq, 200, headers, 'id', nonce);
      }
    }),
  );
}
for (const alg of ['EdDSA', 'ES256']) {
  installResponseSigner(signerOf(keyOf(alg)));
  const n = 20000;
  await calls(2000);
  const main0 = mainThreadUs();
  const proc0 = processUs();
  await calls(n);
  micro[alg] = { main: (mainThreadUs() - main0) / n, proc: (processUs() - proc0) / n };
}
installResponseSigner(undefined);

const line = (mode) => {
  const rps = median(results[mode].map((r) => r.rps));
  const cpu = median(results[mode].map((r) => r.cpuUs));
  return { rps, cpu };
};
const a = line('unsigned');
const b = line('signed');
console.log(`rounds: ${ROUNDS} x ${REQUESTS} GETs, ${CONCURRENCY} connections, 1 KiB body`);
console.log(`unsigned relay: ${a.rps.toFixed(0)} req/s, ${a.cpu.toFixed(1)} µs CPU/response`);
console.log(`signed relay:   ${b.rps.toFixed(0)} req/s, ${b.cpu.toFixed(1)} µs CPU/response`);
console.log(
  `difference: ${(((b.rps - a.rps) / a.rps) * 100).toFixed(1)}% req/s, +${(b.cpu - a.cpu).toFixed(1)} µs CPU/response`,
);
for (const alg of ['EdDSA', 'ES256']) {
  console.log(
    `signRelayedHeaders alone, ${alg}: ${micro[alg].main.toFixed(1)} µs main thread, ` +
      `${micro[alg].proc.toFixed(1)} µs process CPU per call`,
  );
}
