// Shared bench helpers: child processes, ports, wrk runs and parsing, RSS sampling,
// percentiles and result files. Every process started here is tracked and stopped by
// `stopAll()` (also on exit), and every load loop is bounded in count and time.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearInterval, setInterval } from 'node:timers';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO = dirname(BENCH_DIR);
export const RESULTS_DIR = join(BENCH_DIR, 'results');
export const LIB_DIR = join(BENCH_DIR, 'lib');
/** Multiplies every measured duration (BENCH_SCALE=0.5 for a quick run). */
export const SCALE = Number(process.env.BENCH_SCALE ?? 1);
export const secs = (s) => Math.max(1, Math.round(s * SCALE));

const children = new Set();

/** Spawns a tracked child; resolves once `ready(output)` is true (or rejects on exit/timeout). */
export function startProcess(cmd, args, { ready, env, timeoutMs = 60_000, name = cmd } = {}) {
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const onData = (c) => {
    out += c.toString();
    if (out.length > 1_000_000) out = out.slice(-100_000);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.once('exit', () => children.delete(child));
  const handle = {
    child,
    pid: child.pid,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
  if (!ready) return Promise.resolve(handle);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start in time:\n${out.slice(-2000)}`));
    }, timeoutMs);
    const check = () => {
      if (ready(out)) {
        clearTimeout(timer);
        child.stdout.off('data', check);
        child.stderr.off('data', check);
        resolve(handle);
      }
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}):\n${out.slice(-2000)}`));
    });
  });
}

/** Stops every child still running (SIGTERM, then SIGKILL after 15 s). */
export async function stopAll() {
  await Promise.all(
    [...children].map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
      return exited.then(() => clearTimeout(t));
    }),
  );
}
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resident set size of a process (and its children, for nginx workers), bytes. */
export function rssOf(pids) {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // exited
    }
  }
  return total;
}

/** Children pids of a pid (nginx workers). */
export function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Samples the peak RSS of `pidsFn()` every 100 ms until the returned stop() is called. */
export function sampleRss(pidsFn) {
  let peak = 0;
  const tick = () => {
    peak = Math.max(peak, rssOf(pidsFn()));
  };
  tick();
  const timer = setInterval(tick, 100);
  return () => {
    clearInterval(timer);
    tick();
    return peak;
  };
}

/** CPU time (user + system, seconds) of processes, from /proc. */
export function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]); // utime, stime
    } catch {
      // exited
    }
  }
  return ticks / 100;
}

/** CPU time (user + system, seconds) of each thread of a process, by thread id, from /proc. */
export function threadCpuSeconds(pid) {
  const out = new Map();
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // exited
  }
  for (const tid of tids) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(rest[11]) + Number(rest[12])) / 100);
    } catch {
      // the thread ended
    }
  }
  return out;
}

export function hasCommand(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * Installs a Debian package when its command is missing. Returns true when the command is
 * available afterwards; says so when it cannot.
 */
export function ensureDebianPackage(cmd, pkg) {
  if (hasCommand(cmd)) return true;
  console.log(`${cmd} not found: installing Debian package ${pkg} (apt-get)...`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args) =>
    spawnSync(sudo[0] ?? args[0], sudo.length ? [...sudo.slice(1), ...args] : args.slice(1), {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', pkg]);
  if (hasCommand(cmd)) return true;
  console.log(`could not install ${pkg}: the ${cmd} figures are skipped in this run.`);
  return false;
}

/**
 * Runs the open-loop generator (`loadgen.mjs`) as its own process with `spec` (see that
 * file) and resolves its one-line JSON result.
 */
export async function runLoadgen(spec) {
  const proc = await startProcess(
    process.execPath,
    [join(LIB_DIR, 'loadgen.mjs'), JSON.stringify(spec)],
    {
      name: 'loadgen',
    },
  );
  const code = await new Promise((r) => {
    if (proc.child.exitCode !== null) r(proc.child.exitCode);
    else proc.child.once('exit', r);
  });
  if (code !== 0) throw new Error(`loadgen failed: ${proc.output().slice(-1000)}`);
  return JSON.parse(proc.output().trim().split('\n').at(-1));
}

/**
 * Runs wrk against `url` with the request-cycling Lua script; returns throughput, the
 * closed-loop latency distribution, and the CPU seconds wrk itself used (to show it is not
 * the bottleneck). `watch` pids get their CPU seconds over the run reported too.
 */
export async function runWrk({
  url,
  requestsFile,
  bodyFile = '',
  method = 'POST',
  connections,
  seconds,
  threads = 1,
  watch = {},
}) {
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '10s',
    '--latency',
    '-s',
    join(LIB_DIR, 'requests.lua'),
    url,
    '--',
    requestsFile,
    bodyFile,
    method,
    String(threads),
  ];
  const before = Object.fromEntries(
    Object.entries(watch).map(([k, pids]) => [k, cpuSeconds(pids())]),
  );
  const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  let wrkCpu = 0;
  const poll = setInterval(() => {
    const c = cpuSeconds([child.pid]);
    if (c > 0) wrkCpu = c;
  }, 100);
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  clearInterval(poll);
  clearTimeout(killer);
  children.delete(child);
  if (code !== 0) throw new Error(`wrk failed (${code}): ${stderr || stdout}`);
  const cpu = Object.fromEntries(
    Object.entries(watch).map(([k, pids]) => [k, cpuSeconds(pids()) - before[k]]),
  );
  cpu.wrk = wrkCpu;
  return { ...parseWrk(stdout), cpu_seconds: cpu, seconds };
}

function toMs(v, unit) {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

export function parseWrk(text) {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? 0);
  const lat = {};
  for (const p of ['50', '90', '99']) {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(text);
    if (m) lat[`p${p}`] = toMs(m[1], m[2]);
  }
  const total = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = errs ? errs.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const wrapped = Number(/wrapped=(\d+)/.exec(text)?.[1] ?? 0);
  return { rps, latency: lat, total, non2xx, socketErrors, wrapped };
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function machine() {
  let kernel = '';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // not Linux
  }
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    memory_gib: Math.round(totalmem() / 2 ** 30),
    kernel,
    scale: SCALE,
  };
}

export function writeResults(name, json, markdown) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, `${name}.md`), markdown);
}

/** A markdown table from rows of cells. */
export function mdTable(header, rows, align) {
  const a = align ?? header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [
    `| ${header.join(' | ')} |`,
    `| ${a.join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

export const fmt = (n, d = 0) =>
  n === undefined || n === null || Number.isNaN(n) ? 'n/a' : Number(n).toFixed(d);
export const ratio = (a, b) =>
  a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b)
    ? 'n/a'
    : (a / b).toFixed(2);
