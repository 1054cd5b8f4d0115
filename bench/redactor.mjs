// Bench scenario "redactor": the response redactor (packages/server/src/scrub/redactor.ts)
// in MB/s on typical bodies, beside `Buffer.indexOf` of one secret over the same bytes (the
// floor: the least any scan can do), and the CPU a probe made of long prefixes of a secret
// costs against one of the same length that matches nothing (the oracle argument: the work
// per byte must not depend on how far the input matches). CPU time of this process, median
// of interleaved rounds. Writes bench/results/redactor.json and redactor.md.
//
// A/B in one process: BENCH_REDACTOR_BASELINE=DIR, where DIR holds another build's
// `scrub/*.js` (for example `packages/server/dist/scrub` of an earlier commit, copied aside),
// adds that build's MB/s, measured in the same interleaved rounds, and the ratio.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileMatcher } from '../packages/server/dist/scrub/matcher.js';
import { secretPatterns } from '../packages/server/dist/scrub/patterns.js';
import { createRedactor } from '../packages/server/dist/scrub/redactor.js';

export const name = 'redactor';

const ROUNDS = Number(process.env.BENCH_REDACTOR_ROUNDS ?? 9);
// Untimed passes over each body before its rounds: V8 reaches the redactor's final
// optimised code only after ~20 MiB of a body (on this machine the first passes of the JSON
// body take 140-220 ms, the next ~15 about 18 ms, then ~11 ms), and a proxy under load runs
// that code; without them the median read the middle phase.
const WARMUP = Number(process.env.BENCH_REDACTOR_WARMUP ?? 40);
const MIB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** CPU milliseconds of `fn`, user + system. */
function cpuMs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000;
}

const BASELINE = process.env.BENCH_REDACTOR_BASELINE;
const baseline =
  BASELINE === undefined
    ? undefined
    : {
        compileMatcher: (await import(`${BASELINE}/matcher.js`)).compileMatcher,
        createRedactor: (await import(`${BASELINE}/redactor.js`)).createRedactor,
      };

function redact(matcher, body, create = createRedactor) {
  const r = create(matcher);
  for (let i = 0; i < body.length; i += CHUNK) r.push(body.subarray(i, i + CHUNK));
  r.end();
}

function indexOfAll(needle, body) {
  let n = 0;
  for (let i = body.indexOf(needle); i !== -1; i = body.indexOf(needle, i + 1)) n++;
  return n;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function run() {
  // A union as a busy node holds it: 64 tokens of 40 bytes.
  const secrets = Array.from({ length: 64 }, () => `tok_${randomBytes(27).toString('base64url')}`);
  const matcher = compileMatcher(secretPatterns(secrets));
  const baseMatcher = baseline?.compileMatcher(secretPatterns(secrets));
  const target = secrets[0];
  const json = Buffer.from(
    JSON.stringify(
      Array.from({ length: 9000 }, (_, i) => ({
        id: i,
        name: `item ${i}`,
        url: `https://api.example.com/v1/items/${i}?expand=owner&page=2`,
        note: 'lorem ipsum dolor sit amet, consectetur adipiscing elit',
      })),
    ),
  ).subarray(0, MIB);
  const base64 = Buffer.from(randomBytes((3 * MIB) / 4).toString('base64'));
  const html = Buffer.from(
    '<tr><td>&lt;b&gt;row&lt;/b&gt;</td><td><a href="/x?a=1&amp;b=2">link</a></td></tr>\n'.repeat(
      Math.ceil(MIB / 80),
    ),
  ).subarray(0, MIB);
  // Oracle probes: a long prefix of the secret, repeated (the automaton goes deep on every
  // byte), against the same text with every character replaced by another of its class
  // (hex digit, other base64 digit, other), so every view but the automaton does the same.
  const prefix = target.slice(0, target.length - 1);
  const sameClass = (c) => {
    const classes = ['0123456789abcdefABCDEF', 'ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ', '-_'];
    const cls = classes.find((k) => k.includes(c));
    return cls === undefined ? c : cls[(cls.indexOf(c) + 7) % cls.length];
  };
  const unrelated = [...prefix].map(sameClass).join('');
  const repeat = (text) =>
    Buffer.from(`${text}~`.repeat(Math.ceil(MIB / (text.length + 1)))).subarray(0, MIB);
  const deep = repeat(prefix);
  const shallow = repeat(unrelated);
  const deepB64 = Buffer.from(deep.toString('base64'));
  const shallowB64 = Buffer.from(shallow.toString('base64'));

  const bodies = { 'JSON API response': json, 'base64 text': base64, 'HTML with entities': html };
  const rows = [];
  for (const [label, body] of Object.entries(bodies)) {
    const redactorMs = [];
    const baselineMs = [];
    const floorMs = [];
    for (let i = 0; i < WARMUP; i++) {
      if (baseline) redact(baseMatcher, body, baseline.createRedactor);
      redact(matcher, body);
    }
    for (let i = 0; i < ROUNDS; i++) {
      if (baseline)
        baselineMs.push(cpuMs(() => redact(baseMatcher, body, baseline.createRedactor)));
      redactorMs.push(cpuMs(() => redact(matcher, body)));
      floorMs.push(cpuMs(() => indexOfAll(Buffer.from(target), body)));
    }
    const mb = body.length / MIB;
    rows.push({
      body: label,
      mib: mb,
      ...(baseline ? { baseline_mb_s: mb / (median(baselineMs) / 1000) } : {}),
      redactor_mb_s: mb / (median(redactorMs) / 1000),
      index_of_mb_s: mb / (median(floorMs) / 1000),
    });
  }
  const oracle = [];
  for (const [label, a, b] of [
    ['prefix of a secret vs no match (plain)', deep, shallow],
    ['prefix of a secret vs no match (base64)', deepB64, shallowB64],
  ]) {
    const am = [];
    const bm = [];
    for (let i = 0; i < WARMUP; i++) {
      redact(matcher, a);
      redact(matcher, b);
    }
    for (let i = 0; i < ROUNDS; i++) {
      am.push(cpuMs(() => redact(matcher, a)));
      bm.push(cpuMs(() => redact(matcher, b)));
    }
    oracle.push({
      probe: label,
      deep_ms: median(am),
      none_ms: median(bm),
      ratio: median(am) / median(bm),
    });
  }

  const here = dirname(fileURLToPath(import.meta.url));
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    secrets: secrets.length,
    rounds: ROUNDS,
    warmup: WARMUP,
    ...(BASELINE ? { baseline: BASELINE } : {}),
  };
  writeFileSync(join(dir, 'redactor.json'), JSON.stringify({ ...meta, rows, oracle }, null, 2));
  const md = [
    '# Redactor benchmark',
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpu}; ${meta.secrets} secrets of 40 bytes in the matcher; CPU time, median of ${ROUNDS} interleaved rounds after ${WARMUP} untimed passes of each body, 64 KiB chunks.`,
    '',
    ...(baseline
      ? [
          '| body | MB/s, baseline | MB/s, redactor | ratio | MB/s, Buffer.indexOf of one secret (floor) |',
          '| --- | ---: | ---: | ---: | ---: |',
          ...rows.map(
            (r) =>
              `| ${r.body} | ${r.baseline_mb_s.toFixed(1)} | ${r.redactor_mb_s.toFixed(1)} | ${(r.redactor_mb_s / r.baseline_mb_s).toFixed(2)}x | ${r.index_of_mb_s.toFixed(0)} |`,
          ),
        ]
      : [
          '| body | MB/s, redactor | MB/s, Buffer.indexOf of one secret (floor) |',
          '| --- | ---: | ---: |',
          ...rows.map(
            (r) => `| ${r.body} | ${r.redactor_mb_s.toFixed(1)} | ${r.index_of_mb_s.toFixed(0)} |`,
          ),
        ]),
    '',
    'The oracle argument (issue 10): the work per byte must not depend on how far the input matches a secret.',
    '',
    '| 1 MiB probe | ms, deep partial matches | ms, no match | ratio |',
    '| --- | ---: | ---: | ---: |',
    ...oracle.map(
      (o) =>
        `| ${o.probe} | ${o.deep_ms.toFixed(1)} | ${o.none_ms.toFixed(1)} | ${o.ratio.toFixed(2)} |`,
    ),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'redactor.md'), md);
  console.log(md);
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
