// Starts the compared paths on loopback (the upstream, nginx, the hand-written Node proxy,
// a Nexus node) and knows their pids for RSS and CPU figures.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childPids, ensureDebianPackage, freePort, LIB_DIR, startProcess } from './common.mjs';
import { startNginx } from './nginx.mjs';

export async function startUpstream() {
  const port = await freePort();
  const proc = await startProcess(process.execPath, [join(LIB_DIR, 'upstream.mjs'), String(port)], {
    ready: (o) => o.includes('upstream listening'),
    name: 'upstream',
  });
  return { port, proc, origin: `http://127.0.0.1:${port}` };
}

export async function startNodeProxy(upstream) {
  const port = await freePort();
  const proc = await startProcess(
    process.execPath,
    [join(LIB_DIR, 'node-proxy.mjs'), String(port), upstream.origin],
    { ready: (o) => o.includes('node proxy listening'), name: 'node proxy' },
  );
  return { port, proc, origin: `http://127.0.0.1:${port}`, pids: () => [proc.pid] };
}

export async function maybeStartNginx(upstream) {
  if (!ensureDebianPackage('nginx', 'nginx')) return undefined;
  const port = await freePort();
  const proc = await startNginx({ port, upstreamPort: upstream.port });
  return {
    port,
    proc,
    origin: `http://127.0.0.1:${port}`,
    pids: () => [proc.pid, ...childPids(proc.pid)],
  };
}

/**
 * Starts a Nexus node with the bench launcher. `agents`: [{ name, alg, count }].
 * Returns the node and the minted leases (with private keys, for pre-signing).
 */
export async function startNexusNode(upstream, options) {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-node-'));
  const spec = {
    dir,
    upstreamPort: upstream.port,
    proxyPort: await freePort(),
    adminPort: await freePort(),
    services: options.services ?? 1,
    rules: options.rules ?? 1,
    rulesOnBench: options.rulesOnBench ?? false,
    agents: options.agents,
    leasesOut: join(dir, 'leases.json'),
    ...(options.benchHosts === undefined ? {} : { benchHosts: options.benchHosts }),
    ...(options.benchWebSocket === true ? { benchWebSocket: true } : {}),
    ...(options.extraConfig === undefined ? {} : { extraConfig: options.extraConfig }),
    ...(options.adminExtra === undefined ? {} : { adminExtra: options.adminExtra }),
    ...(options.enrollFor === undefined
      ? {}
      : { enrollFor: options.enrollFor, tokensOut: join(dir, 'tokens.json') }),
  };
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify(spec));
  // options.root: another built checkout whose Nexus to start (bench/ab.mjs).
  const lib = options.root === undefined ? LIB_DIR : join(options.root, 'bench', 'lib');
  const nodeArgs = [...(options.nodeArgs ?? []), join(lib, 'nexus-node.mjs'), specPath];
  const proc = await startProcess(process.execPath, nodeArgs, {
    ready: (o) => o.includes('nexus bench ready'),
    name: 'nexus',
    timeoutMs: options.startTimeoutMs ?? 120_000,
  });
  const leases = JSON.parse(readFileSync(spec.leasesOut, 'utf8'));
  const tokens =
    spec.tokensOut === undefined ? [] : JSON.parse(readFileSync(spec.tokensOut, 'utf8'));
  return {
    tokens,
    port: spec.proxyPort,
    proc,
    dir,
    origin: `http://127.0.0.1:${spec.proxyPort}`,
    adminOrigin: `http://127.0.0.1:${spec.adminPort}`,
    pids: () => [proc.pid],
    leases,
  };
}
