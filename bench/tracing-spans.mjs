// In-process cost of tracing one request (no proxy, no network noise): `node
// bench/tracing-spans.mjs` drives N requests' spans through packages/server's tracer (start,
// the 8 stage spans, the traceparent, end) with the real OTLP/HTTP JSON exporter posting to
// a loopback sink, then flushes, and prints the process CPU per request (µs), for
// sample_ratio 1 and 0. Build first (`npx tsc -b`). Complements bench/tracing.mjs, whose
// end-to-end figure moves with the load on a shared machine.
import { createServer } from 'node:http';
import { createTracing } from '../packages/server/dist/telemetry/tracing.js';

const N = Number(process.env.BENCH_SPANS_REQUESTS ?? 10_000);
const STAGES = ['verify', 'limits', 'policy', 'inject', 'audit', 'upstream', 'relay'];
let received = 0;
const sink = createServer((req, res) => {
  req.on('data', (c) => (received += c.length));
  req.on('end', () => res.end('{}'));
});
await new Promise((r) => sink.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${sink.address().port}/v1/traces`;
const headers = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };

async function run(ratio) {
  const tracing = createTracing({ otlp_endpoint: url, sample_ratio: ratio, service_name: 'b' });
  const before = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const span = tracing.start('POST', headers);
    for (const s of STAGES) span.stage(s, 0.0001);
    span.propagate({ 'content-type': 'application/json' });
    span.end({
      requestId: `r${i}`,
      method: 'POST',
      agent: 'bench',
      path: '/small',
      status: 200,
      bytesIn: 1024,
      bytesOut: 1024,
      service: 'bench',
      decision: 'allow',
      code: 'ok',
      upstreamStatus: 200,
      redactions: 0,
      seconds: 0.001,
    });
    // Let the batch processor export as it would under load (~2000 requests/s).
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
  }
  await tracing.shutdown();
  const cpu = process.cpuUsage(before);
  return (cpu.user + cpu.system) / N;
}

for (const ratio of [1, 0]) {
  const start = received;
  const us = await run(ratio);
  console.log(
    `sample_ratio ${ratio}: ${us.toFixed(1)} us CPU per request (${N} requests, ${Math.round((received - start) / N)} OTLP bytes each; the loopback sink's CPU included)`,
  );
}
sink.close();
