// Bench launcher for a Nexus node, run as its own process: writes a config (loopback
// listeners, a SQLite store and master key in a fresh directory), runs `initNode` and
// `startNexus` exactly as `nexus init` + `nexus up` do, stores the bench credential, and
// enrolls the bench agents through the Authority (one-time enrollment token -> lease).
// The agents' private keys (generated extractable, for the pre-signer only) and leases go
// to a JSON file. Usage: node nexus-node.mjs <spec.json>. Prints "nexus bench ready".
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateAgentKey, signLease } from '../../packages/protocol/dist/index.js';
import {
  createLogger,
  initNode,
  parseConfig,
  startNexus,
} from '../../packages/server/dist/index.js';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const upstream = `http://127.0.0.1:${spec.upstreamPort}`;
const extraServices = Math.max(0, (spec.services ?? 1) - 1);
const extraRules = Math.max(0, (spec.rules ?? 1) - 1);

const services = {
  bench: {
    upstream,
    auth: { type: 'bearer', credential: 'bench-token' },
    // bench/reach.mjs: the host `nexus run`'s forward proxy routes to this service.
    ...(spec.benchHosts === undefined ? {} : { hosts: spec.benchHosts }),
    // bench/websocket.mjs: WebSocket upgrades accepted.
    ...(spec.benchWebSocket === true ? { websocket: true } : {}),
  },
};
for (let i = 0; i < extraServices; i++) {
  services[`svc-${i}`] = { upstream, auth: { type: 'bearer', credential: 'bench-token' } };
}
const agents = {};
for (const a of spec.agents) {
  for (let i = 0; i < a.count; i++)
    agents[a.count === 1 ? a.name : `${a.name}-${i}`] = { roles: ['bench'] };
}
// Filler agents: one per extra rule target, so rules can name real agents.
agents['other-agent'] = { roles: ['other'] };
const policies = [
  {
    id: 'bench-allow',
    allow: { roles: ['bench'], services: ['bench'], methods: ['*'], paths: ['/**'] },
  },
];
// Extra rules spread over the other services (or all on "bench" with rulesOnBench), each
// a realistic matcher set that does not match the bench agent.
for (let i = 0; i < extraRules; i++) {
  const svc = spec.rulesOnBench || extraServices === 0 ? 'bench' : `svc-${i % extraServices}`;
  policies.push({
    id: `rule-${i}`,
    allow: {
      agents: ['other-agent'],
      services: [svc],
      methods: ['GET', 'POST'],
      paths: [`/repos/org-${i}/**`],
    },
  });
}

const config = parseConfig(
  {
    version: 1,
    authority: { lease_ttl: '1h', trust_domain: 'bench.local' },
    proxy: {
      listen: `127.0.0.1:${spec.proxyPort}`,
      max_body: '8MiB',
    },
    admin: { listen: `127.0.0.1:${spec.adminPort}`, ...(spec.adminExtra ?? {}) },
    store: `sqlite:${join(spec.dir, 'nexus.db')}`,
    master_key_file: join(spec.dir, 'master.key'),
    log: { level: 'warn' },
    services,
    agents,
    policies,
    // Extra top-level sections (bench/tracing.mjs: `telemetry`).
    ...(spec.extraConfig ?? {}),
  },
  { baseDir: spec.dir },
);

await initNode(config);
const node = await startNexus({ config, logger: createLogger('warn') });
await node.vault.set('bench-token', { value: 'bench-secret-token-0123456789abcdef' });

// Up to DIRECT_MINT_OVER agents enroll through the Authority (one-time token -> lease, as
// `nexus agent enroll` does). Past that (the growth scenario's 100,000 leases), leases are
// signed directly with the Authority's active key, with the claims the Authority issues,
// without the per-lease store row: enrollment writes three fsync'd rows per lease, and the
// proxy's request path never reads a lease row (it verifies the JWT and checks the
// in-memory revocation state).
const DIRECT_MINT_OVER = 1000;
const total = spec.agents.reduce((n, a) => n + a.count, 0);
const leases = [];
const issuer = config.authority.issuer;
const aud = config.proxy.public_url;
for (const a of spec.agents) {
  for (let i = 0; i < a.count; i++) {
    const name = a.count === 1 ? a.name : `${a.name}-${i}`;
    const key = await generateAgentKey(a.alg, { extractable: true });
    let lease;
    if (total <= DIRECT_MINT_OVER) {
      const { token } = await node.authority.createEnrollmentToken(name);
      lease = (await node.authority.enroll(token, key.publicJwk)).lease;
    } else {
      const signing = node.authority.keys.active();
      const now = Math.floor(Date.now() / 1000);
      lease = await signLease(
        {
          iss: issuer,
          sub: `nexus://${config.authority.trust_domain}/agent/${name}`,
          aud,
          iat: now,
          nbf: now,
          exp: now + 3600,
          jti: randomBytes(16).toString('base64url'),
          cnf: { jwk: key.publicJwk },
          scope: 'bench',
        },
        signing.privateKey,
        { kid: signing.kid, alg: signing.alg },
      );
    }
    const privateJwk = await globalThis.crypto.subtle.exportKey('jwk', key.privateKey);
    leases.push({ agent: name, alg: a.alg, lease, privateJwk });
  }
}
writeFileSync(spec.leasesOut, JSON.stringify(leases));
// bench/reach.mjs enrolls through the SDK (as `nexus run` does): one-time tokens only.
if (spec.tokensOut !== undefined) {
  const tokens = [];
  for (const name of spec.enrollFor ?? []) {
    tokens.push({ agent: name, token: (await node.authority.createEnrollmentToken(name)).token });
  }
  writeFileSync(spec.tokensOut, JSON.stringify(tokens));
}
leases.length = 0;
globalThis.gc?.();
console.log(`nexus bench ready ${node.proxyUrl}`);

const stop = () => {
  node.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
