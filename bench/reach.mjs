// Bench scenario "reach" (issue 11): the latency `nexus run`'s forward-proxy mode adds over
// path mode. One Nexus node and the bench upstream in their own processes; in this process
// an SDK agent enrolled with a one-time token (as `nexus run` does), the sidecar with its
// run CA, and one sequential client (undici, keep-alive) sending 1 KiB GETs:
//   path    GET $NEXUS_PROXY/bench/small
//   http    GET http://api.bench.test/small through the sidecar as HTTP proxy (undici
//           tunnels it: CONNECT api.bench.test:80, kept open)
//   https   GET https://api.bench.test/small through a CONNECT tunnel (kept open), TLS
//           terminated by the sidecar with the run CA's leaf
// Requests rotate between the modes one by one (path, http, https, path, ...), so a change in
// machine load hits every mode alike; besides each mode's p50 and p99, each forward-proxy
// request is paired with the path request just before it, and the median of those paired
// differences is the added latency (robust on a busy machine). Medians over rounds.
// Writes bench/results/reach.{json,md}.
import { loadavg } from 'node:os';
import { Agent, ProxyAgent, request } from 'undici';
import { enroll } from '../packages/sdk/dist/index.js';
import { startSidecar } from '../packages/cli/dist/sidecar.js';
import { createRunCa } from '../packages/cli/dist/run-ca.js';
import { fmt, machine, mdTable, percentile, secs, stopAll, writeResults } from './lib/common.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

export const name = 'reach';

const HOST = 'api.bench.test';
const ROUNDS = 3;
const PER_ROUND = Math.max(50, secs(300));
const WARMUP = 30;

async function timed(url, dispatcher) {
  const t0 = process.hrtime.bigint();
  const res = await request(url, { dispatcher });
  await res.body.arrayBuffer();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.statusCode !== 200) throw new Error(`${url}: status ${res.statusCode}`);
  return ms;
}

export async function run() {
  const upstream = await startUpstream();
  let sidecar;
  try {
    const nexus = await startNexusNode(upstream, {
      agents: [{ name: 'bench-ed', alg: 'ed25519', count: 1 }],
      benchHosts: [HOST],
      enrollFor: ['bench-ed'],
    });
    const agent = await enroll({
      authority: nexus.origin,
      enrollmentToken: nexus.tokens[0].token,
      autoRenew: false,
    });
    const ca = await createRunCa([HOST]);
    sidecar = await startSidecar(agent, {
      forward: { hosts: new Map([[HOST, { service: 'bench', pathPrefix: '' }]]), ca },
    });
    const modes = {
      path: { url: `${sidecar.url}/bench/small`, dispatcher: new Agent({ connections: 1 }) },
      http: {
        url: `http://${HOST}/small`,
        dispatcher: new ProxyAgent({ uri: sidecar.url, connections: 1 }),
      },
      https: {
        url: `https://${HOST}/small`,
        dispatcher: new ProxyAgent({
          uri: sidecar.url,
          connections: 1,
          requestTls: { ca: ca.certPem, servername: HOST },
        }),
      },
    };
    for (const m of Object.values(modes)) {
      for (let i = 0; i < WARMUP; i++) await timed(m.url, m.dispatcher);
    }
    const load_before = loadavg()[0];
    const rounds = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
    for (let r = 0; r < ROUNDS; r++) {
      const samples = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
      const paired = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
      for (let i = 0; i < PER_ROUND; i++) {
        let path = 0;
        for (const [k, m] of Object.entries(modes)) {
          const ms = await timed(m.url, m.dispatcher);
          if (k === 'path') path = ms;
          samples[k].push(ms);
          paired[k].push(ms - path);
        }
      }
      for (const k of Object.keys(modes)) {
        const xs = samples[k].sort((a, b) => a - b);
        const ds = paired[k].sort((a, b) => a - b);
        rounds[k].push({
          p50: percentile(xs, 50),
          p99: percentile(xs, 99),
          added_p50: percentile(ds, 50),
        });
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const summary = Object.fromEntries(
      Object.entries(rounds).map(([k, rs]) => [
        k,
        {
          p50_ms: median(rs.map((x) => x.p50)),
          p99_ms: median(rs.map((x) => x.p99)),
          added_p50_ms: median(rs.map((x) => x.added_p50)),
        },
      ]),
    );
    const base = summary.path;
    const sign = (x) => `${x >= 0 ? '+' : ''}${fmt(x, 2)}`;
    const rows = Object.entries(summary).map(([k, s]) => [
      k,
      fmt(s.p50_ms, 2),
      sign(s.p50_ms - base.p50_ms),
      sign(s.added_p50_ms),
      fmt(s.p99_ms, 2),
      sign(s.p99_ms - base.p99_ms),
    ]);
    const table = mdTable(
      ['mode', 'p50 ms', 'p50 vs path', 'added, paired median', 'p99 ms', 'p99 vs path'],
      rows,
    );
    const load = [load_before, loadavg()[0]].map((x) => fmt(x, 1)).join(' -> ');
    const md = `# reach: forward-proxy mode vs path mode (1 KiB GET, sequential, keep-alive)\n\n${ROUNDS} rounds x ${PER_ROUND} requests per mode, interleaved request by request; medians over rounds. "added, paired median": the median difference between each forward-proxy request and the path request just before it. Load average (1 min) during the run: ${load}.\n\n${table}\n`;
    console.log(md);
    writeResults(
      'reach',
      { meta: { ...machine(), loadavg_1m: [load_before, loadavg()[0]] }, rounds, summary },
      md,
    );
    for (const m of Object.values(modes)) await m.dispatcher.close();
    await agent.revoke().catch(() => undefined);
  } finally {
    await sidecar?.close();
    await stopAll();
  }
}
