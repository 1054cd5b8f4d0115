// The proxy's request-body stage alone, in process (issue 14 step 5): 1 MiB POSTs over
// loopback from a child process (8 keep-alive connections), each read with `readBody` and
// its Content-Digest checked with `verifyRequestBody`, three ways alternated in rounds:
//   copy     - WebCrypto over a fresh copy of the body (the protocol's webCryptoDigest,
//              what serverDigest did before);
//   view     - serverDigest as built (WebCrypto over a view of the body);
//   streamed - sha-256 fed every chunk on the main thread as it arrives.
// Prints main-thread and whole-process CPU per request, medians of the rounds.
// Usage: node bench/body-stage.mjs (BENCH_BODY_ROUNDS=6, BENCH_BODY_SECONDS=4); build first.
// Not part of `npm run bench`.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { verifyRequestBody, webCryptoDigest } from '../packages/protocol/dist/index.js';
import { readBody } from '../packages/server/dist/proxy/read-body.js';
import { serverDigest } from '../packages/server/dist/util/digest.js';

const BODY = Buffer.alloc(1024 * 1024, '{"k":"abcdefghijklmnopqrstuvwxyz"}\n');
const MAX = 8 * 1024 * 1024;
const COVERED = { covered: ['content-digest', 'content-type'] };

if (process.argv[2] === 'client') {
  const port = Number(process.argv[3]);
  const digest = `sha-256=:${createHash('sha256').update(BODY).digest('base64')}:`;
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const headers = {
    'content-length': BODY.length,
    'content-digest': digest,
    'content-type': 'application/json',
  };
  const one = () =>
    new Promise((resolve) => {
      const r = request({ host: '127.0.0.1', port, method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      r.on('error', resolve);
      r.end(BODY);
    });
  for (let i = 0; i < 8; i++)
    void (async () => {
      for (;;) await one();
    })();
} else {
  const copy = (alg, body) =>
    body.length > 64 * 1024 ? webCryptoDigest(alg, body) : serverDigest(alg, body);
  const variants = {
    copy: async (req) => {
      const body = await readBody(req, MAX);
      await verifyRequestBody(COVERED, req.headers, body, copy);
    },
    view: async (req) => {
      const body = await readBody(req, MAX);
      await verifyRequestBody(COVERED, req.headers, body, serverDigest);
    },
    streamed: async (req) => {
      const hash = createHash('sha256');
      const onData = (chunk) => hash.update(chunk);
      req.on('data', onData);
      const body = await readBody(req, MAX);
      req.off('data', onData);
      const sum = hash.digest();
      await verifyRequestBody(COVERED, req.headers, body, (alg, b) =>
        b === body && alg === 'sha-256' ? sum : serverDigest(alg, b),
      );
    },
  };
  let current = variants.copy;
  let served = 0;
  const server = createServer((req, res) => {
    current(req).then(
      () => {
        served++;
        res.end('ok');
      },
      () => res.writeHead(500).end(),
    );
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const child = fork(new URL(import.meta.url).pathname, ['client', String(server.address().port)]);
  const mainCpuUs = () => {
    const f = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10_000;
  };
  const processCpuUs = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  await sleep(2000);
  const rounds = Number(process.env.BENCH_BODY_ROUNDS ?? 6);
  const seconds = Number(process.env.BENCH_BODY_SECONDS ?? 4);
  const results = {};
  for (let round = 0; round < rounds; round++) {
    const names = Object.keys(variants);
    for (const name of round % 2 === 0 ? names : names.reverse()) {
      current = variants[name];
      await sleep(300);
      const n0 = served;
      const m0 = mainCpuUs();
      const p0 = processCpuUs();
      await sleep(seconds * 1000);
      const n = Math.max(1, served - n0);
      const r = { n, main: (mainCpuUs() - m0) / n, all: (processCpuUs() - p0) / n };
      (results[name] ??= []).push(r);
      console.log(
        `round ${round + 1} ${name}: ${n} requests, main thread ${Math.round(r.main)} us/request, process ${Math.round(r.all)} us/request`,
      );
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [name, rs] of Object.entries(results)) {
    console.log(
      `${name}: median main thread ${Math.round(median(rs.map((r) => r.main)))} us/request, process ${Math.round(median(rs.map((r) => r.all)))} us/request`,
    );
  }
  child.kill();
  server.closeAllConnections();
  server.close();
}
