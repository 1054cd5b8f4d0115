// Bench scenario "websocket" (issue 11): what Nexus adds to a WebSocket stream. A `ws` echo
// upstream in this process; one Nexus node in its own process with the service opted in;
// an SDK agent and `nexus run`'s sidecar in this process. One connection per mode, one
// sequential client sending 1 KiB text messages and waiting for each echo:
//   direct   ws://upstream/echo
//   nexus    ws://sidecar/bench/echo (sidecar signs and tunnels; the node verifies, injects,
//            redacts every upstream message whole)
// Also the handshake time (connect to open). Rounds alternate between the modes; medians
// over rounds of each mode's p50 and p99. Writes bench/results/websocket.{json,md}.
import { createServer } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { enroll } from '../packages/sdk/dist/index.js';
import { startSidecar } from '../packages/cli/dist/sidecar.js';
import { fmt, machine, mdTable, percentile, secs, stopAll, writeResults } from './lib/common.mjs';
import { startNexusNode } from './lib/targets.mjs';

export const name = 'websocket';

const ROUNDS = 3;
const PER_ROUND = Math.max(200, secs(1000));
const HANDSHAKES = 20;
const WARMUP = 100;
const MESSAGE = 'x'.repeat(1024);

function open(url) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const ws = new WebSocket(url);
    ws.once('open', () => resolve({ ws, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    ws.once('error', reject);
  });
}

function echo(ws) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    ws.once('message', () => resolve(Number(process.hrtime.bigint() - t0) / 1e6));
    ws.send(MESSAGE);
  });
}

const close = (ws) =>
  new Promise((r) => {
    ws.once('close', r);
    ws.close();
  });

export async function run() {
  const server = createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (d, binary) => ws.send(d, { binary })));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  let sidecar;
  try {
    const nexus = await startNexusNode(
      { port },
      {
        agents: [{ name: 'bench-ed', alg: 'ed25519', count: 1 }],
        enrollFor: ['bench-ed'],
        benchWebSocket: true,
      },
    );
    const agent = await enroll({
      authority: nexus.origin,
      enrollmentToken: nexus.tokens[0].token,
      autoRenew: false,
    });
    sidecar = await startSidecar(agent);
    const urls = {
      direct: `ws://127.0.0.1:${port}/echo`,
      nexus: `${sidecar.url.replace(/^http/, 'ws')}/bench/echo`,
    };
    const rounds = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
    const handshakes = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
    for (const [k, url] of Object.entries(urls)) {
      for (let i = 0; i < HANDSHAKES; i++) {
        const o = await open(url);
        handshakes[k].push(o.ms);
        await close(o.ws);
      }
      handshakes[k].sort((a, b) => a - b);
    }
    const conns = {};
    for (const [k, url] of Object.entries(urls)) {
      conns[k] = (await open(url)).ws;
      for (let i = 0; i < WARMUP; i++) await echo(conns[k]);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of Object.keys(urls)) {
        const samples = [];
        for (let i = 0; i < PER_ROUND; i++) samples.push(await echo(conns[k]));
        samples.sort((a, b) => a - b);
        rounds[k].push({ p50: percentile(samples, 50), p99: percentile(samples, 99) });
      }
    }
    for (const ws of Object.values(conns)) await close(ws);
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const summary = Object.fromEntries(
      Object.entries(rounds).map(([k, rs]) => [
        k,
        {
          p50_ms: median(rs.map((x) => x.p50)),
          p99_ms: median(rs.map((x) => x.p99)),
          handshake_p50_ms: percentile(handshakes[k], 50),
        },
      ]),
    );
    const base = summary.direct;
    const rows = Object.entries(summary).map(([k, s]) => [
      k,
      fmt(s.p50_ms, 3),
      `+${fmt(s.p50_ms - base.p50_ms, 3)}`,
      fmt(s.p99_ms, 3),
      fmt(s.handshake_p50_ms, 2),
    ]);
    const table = mdTable(
      ['mode', 'echo p50 ms', 'p50 vs direct', 'echo p99 ms', 'handshake p50 ms'],
      rows,
    );
    const md = `# websocket: a 1 KiB text echo through Nexus (sidecar, node, redactor) vs direct\n\n${ROUNDS} rounds x ${PER_ROUND} sequential echoes per mode on one connection, medians over rounds; ${HANDSHAKES} handshakes per mode.\n\n${table}\n`;
    console.log(md);
    writeResults('websocket', { meta: machine(), rounds, handshakes, summary }, md);
    await agent.revoke().catch(() => undefined);
  } finally {
    await sidecar?.close();
    await stopAll();
    for (const ws of wss.clients) ws.terminate();
    await new Promise((r) => server.close(r));
  }
}
