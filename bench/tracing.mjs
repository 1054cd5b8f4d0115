// Cost of OpenTelemetry tracing on the proxy's hot path: `node bench/tracing.mjs` starts one
// upstream, a loopback OTLP/HTTP sink that accepts and discards exports, and two Nexus
// nodes of this checkout: OFF (no `telemetry:`) and ON (`telemetry.traces` to the sink,
// sample_ratio 1: every request traced and exported). It alternates 1 KiB POST saturation
// runs (wrk, 64 connections, pre-signed Ed25519 requests) between them, BENCH_AB_ROUNDS
// times (default 5) for BENCH_AB_SECONDS each (default 5), and prints the medians of req/s
// and Nexus CPU per request (µs), and the difference ON - OFF. Not part of `npm run bench`.
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDebianPackage, runWrk, stopAll } from './lib/common.mjs';
import { importLeaseKeys, presign } from './lib/presign.mjs';
import { startNexusNode, startUpstream } from './lib/targets.mjs';

const ROUNDS = Number(process.env.BENCH_AB_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_AB_SECONDS ?? 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (!ensureDebianPackage('wrk', 'wrk')) throw new Error('wrk is required');
let exported = 0;
const sink = createServer((req, res) => {
  req.on('data', (c) => (exported += c.length));
  req.on('end', () => res.end('{}'));
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));
const sinkUrl = `http://127.0.0.1:${sink.address().port}/v1/traces`;

const tmp = mkdtempSync(join(tmpdir(), 'nexus-bench-tracing-'));
const body = Buffer.from(JSON.stringify({ data: 'y'.repeat(1024 - 11) }));
const bodyFile = join(tmp, 'small.body');
writeFileSync(bodyFile, body);
const upstream = await startUpstream();

async function startNode(extraConfig) {
  const nexus = await startNexusNode(upstream, {
    agents: [{ name: 'bench-ed', alg: 'ed25519', count: 1 }],
    ...(extraConfig === undefined ? {} : { extraConfig }),
  });
  return { ...nexus, keys: await importLeaseKeys(nexus.leases) };
}

try {
  const nodes = {
    OFF: await startNode(undefined),
    ON: await startNode({
      telemetry: { traces: { otlp_endpoint: sinkUrl, sample_ratio: 1 } },
    }),
  };
  const results = { OFF: [], ON: [] };
  let n = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const label of round % 2 === 1 ? ['OFF', 'ON'] : ['ON', 'OFF']) {
      const node = nodes[label];
      const file = join(tmp, `req-${n++}.req`);
      await presign({
        file,
        count: 6000 * SECONDS,
        keys: node.keys,
        method: 'POST',
        url: `${node.origin}/bench/small`,
        body,
      });
      const r = await runWrk({
        url: `${node.origin}/bench/small`,
        requestsFile: file,
        bodyFile,
        method: 'POST',
        connections: 64,
        seconds: SECONDS,
        watch: { nexus: () => [node.proc.pid] },
      });
      const cpuUs = (r.cpu_seconds.nexus * 1e6) / Math.max(1, r.total);
      results[label].push({ rps: r.rps, cpuUs });
      console.log(
        `round ${round} ${label}: ${Math.round(r.rps)} req/s, ${Math.round(cpuUs)} us CPU/request, non-2xx ${r.non2xx}`,
      );
    }
  }
  const cpu = {};
  for (const label of ['OFF', 'ON']) {
    const rs = results[label];
    cpu[label] = median(rs.map((x) => x.cpuUs));
    console.log(
      `${label}: median ${Math.round(median(rs.map((x) => x.rps)))} req/s, ${Math.round(cpu[label])} us CPU/request`,
    );
  }
  console.log(`tracing ON - OFF: ${Math.round(cpu.ON - cpu.OFF)} us CPU/request`);
  console.log(`OTLP bytes exported: ${exported}`);
} finally {
  await stopAll();
  sink.close();
}
