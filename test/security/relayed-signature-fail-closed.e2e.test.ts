/**
 * A relayed upstream answer is never written unsigned while a response signer is installed
 * (spec §10.4 [RESP-RELAYED], issue 14): the signature is made off the main thread before
 * the head is written, and when it cannot be made the agent gets a problem response
 * (`internal_error`), not the upstream's answer without Nexus's signature. A real node runs
 * in this process (so that the test can swap its signer), with a real loopback upstream.
 * Uses the built packages (`npx tsc -b` first), as the tests that spawn `nexus` do.
 */
import { request as httpRequest } from 'node:http';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAgentKey, signRequest, type CryptoKey } from '@nexus-proxy/protocol';
// The built server, as `nexus up` runs it (its audit writer thread loads from dist/), and
// the signer module of that same build.
import { loadConfig, startNexus, type RunningNexus } from '../../packages/server/dist/index.js';
import {
  installResponseSigner,
  type ResponseSigningKey,
} from '../../packages/server/dist/proxy/sign-response.js';
import { freePort, runCli } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let node: RunningNexus;
let upstream: TestUpstream;
let lease: string;
let key: CryptoKey;

beforeAll(async () => {
  upstream = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'nexus-sign-closed-'));
  const init = await runCli(['init', '--dir', dir]);
  if (init.code !== 0) throw new Error(`nexus init failed: ${init.stderr}`);
  const configPath = join(dir, 'nexus.yaml');
  await writeFile(
    configPath,
    stringify({
      version: 1,
      proxy: { listen: `127.0.0.1:${await freePort()}` },
      admin: { listen: `127.0.0.1:${await freePort()}` },
      log: { level: 'error' },
      services: { echo: { upstream: upstream.url, auth: { type: 'none' } } },
      agents: { bot: { roles: ['reader'] } },
      policies: [
        { id: 'read', allow: { roles: ['reader'], services: ['echo'], methods: ['GET'] } },
      ],
    }),
  );
  node = await startNexus({ config: await loadConfig(configPath) });
  const operatorToken = (await readFile(join(dir, '.nexus', 'operator.token'), 'utf8')).trim();
  const tokenRes = await fetch(`${node.adminUrl}/v1/agents/bot/enrollment-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
    body: '{}',
  });
  const { enrollment_token } = (await tokenRes.json()) as { enrollment_token: string };
  const agentKey = await generateAgentKey('ed25519');
  const res = await fetch(`${node.proxyUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollment_token, jwk: agentKey.publicJwk }),
  });
  expect(res.status).toBe(201);
  lease = ((await res.json()) as { lease: string }).lease;
  key = agentKey.privateKey;
}, 60_000);

afterAll(async () => {
  installResponseSigner(undefined);
  await node?.close();
  await upstream?.close();
});

/** One signed GET through the proxy, over a fresh connection. */
async function get(path: string) {
  const headers = await signRequest({
    method: 'GET',
    url: node.proxyUrl + path,
    headers: {},
    lease,
    key,
    intent: 'fail-closed test',
  });
  const u = new URL(node.proxyUrl);
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
    (resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, path, headers, agent: false },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}

describe('relayed answers fail closed when they cannot be signed (issue 14, §10.4)', () => {
  it('answers internal_error instead of an unsigned relayed answer, then signs again', async () => {
    const ok = await get('/echo/before');
    expect(ok.status).toBe(200);
    expect(ok.headers['nexus-origin']).toBe('upstream');
    expect(String(ok.headers['signature-input'])).toContain('tag="nexus-response"');

    // What the signer could fail on: a key that cannot sign, no active key.
    const x25519 = generateKeyPairSync('x25519').privateKey;
    const broken: Array<() => ResponseSigningKey> = [
      () => ({ kid: 'k-broken', alg: 'EdDSA', privateKey: x25519 }),
      () => {
        throw new Error('no active key');
      },
    ];
    try {
      for (const [i, signingKey] of broken.entries()) {
        installResponseSigner({ key: signingKey, clock: Date.now });
        const before = upstream.requests.length;
        const r = await get(`/echo/broken-${i}`);
        // The upstream was asked (the request record is durable), its answer withheld.
        expect(upstream.requests.length).toBe(before + 1);
        expect(r.status).toBe(500);
        expect(r.headers['nexus-error']).toBe('internal_error');
        expect(r.headers['nexus-origin']).toBeUndefined();
        expect(r.headers['signature']).toBeUndefined();
        expect((JSON.parse(r.body) as { code: string }).code).toBe('internal_error');
        expect(r.body).not.toContain('/echo/broken');
      }
    } finally {
      installResponseSigner({ key: () => node.authority.keys.active(), clock: Date.now });
    }
    const again = await get('/echo/after');
    expect(again.status).toBe(200);
    expect(again.headers['nexus-origin']).toBe('upstream');
  });
});
