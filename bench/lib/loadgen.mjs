// Open-loop load generator, run as its own process: sends pre-signed requests at a fixed
// offered rate and measures each latency from the request's scheduled send time (so a
// stalled server is charged for the queue it causes: no coordinated omission). Mode
// "ttfb": sequential requests, time to the first body byte (SSE).
// Usage: node loadgen.mjs '<json spec>'; prints one JSON line of results.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

const spec = JSON.parse(process.argv[2]);
const url = new URL(spec.url);
const lines = readFileSync(spec.requestsFile, 'utf8').split('\n').filter(Boolean);
const body = spec.bodyFile ? readFileSync(spec.bodyFile) : undefined;
const pool = new Pool(url.origin, { connections: spec.connections ?? 64, pipelining: 1 });

function headersOf(line) {
  const parts = line.split('\t');
  const h = {};
  for (let i = 0; i + 1 < parts.length; i += 2) h[parts[i]] = parts[i + 1];
  return h;
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function fixedRate() {
  const { rate, seconds } = spec;
  const total = Math.min(Math.floor(rate * seconds), lines.length);
  const warm = Math.floor(total * (spec.warmupFraction ?? 0.2));
  const lat = [];
  let ok = 0;
  let bad = 0;
  let errors = 0;
  let sent = 0;
  const inflight = new Set();
  const start = performance.now();
  const one = (i, scheduled) => {
    const p = pool
      .request({
        path: url.pathname + url.search,
        method: spec.method,
        headers: headersOf(lines[i]),
        body,
      })
      .then(async (r) => {
        await r.body.dump();
        if (r.statusCode >= 200 && r.statusCode < 300) ok++;
        else bad++;
        if (i >= warm) lat.push(performance.now() - scheduled);
      })
      .catch(() => {
        errors++;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const deadline = start + seconds * 1000 + 5000;
  while (sent < total && performance.now() < deadline) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (sent < due) {
      one(sent, start + (sent / rate) * 1000);
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  const wait = Promise.all([...inflight]);
  await Promise.race([wait, new Promise((r) => setTimeout(r, 10_000))]);
  const elapsed = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return {
    offered: rate,
    sent,
    ok,
    non2xx: bad,
    errors,
    achieved: ok / elapsed,
    p50: pct(lat, 50),
    p90: pct(lat, 90),
    p99: pct(lat, 99),
    max: lat.at(-1) ?? null,
  };
}

async function ttfb() {
  const n = Math.min(spec.count, lines.length);
  const t = [];
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const r = await pool.request({
      path: url.pathname + url.search,
      method: spec.method,
      headers: headersOf(lines[i]),
    });
    let first;
    for await (const chunk of r.body) {
      if (first === undefined && chunk.length > 0) first = performance.now() - s;
    }
    if (r.statusCode !== 200 || first === undefined) bad++;
    else if (i >= 10) t.push(first);
  }
  t.sort((a, b) => a - b);
  return { count: n, non2xx: bad, p50: pct(t, 50), p90: pct(t, 90), p99: pct(t, 99) };
}

const result = spec.mode === 'ttfb' ? await ttfb() : await fixedRate();
console.log(JSON.stringify(result));
await pool.close();
