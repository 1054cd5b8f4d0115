/**
 * Issue 10, the redactor as a prefix oracle. The redactor used to hold back "the tail that
 * could start a secret" and write it as its own chunk at the end: the size of the last
 * chunk told an agent how many of its own bytes matched the start of some secret. Through
 * an echoing `auth: none` service an agent recovered another service's bearer token byte
 * by byte (the union matcher held every recent secret of every service), and an HMAC key
 * that never leaves Nexus.
 *
 * Here a patient agent runs that attack for real: about 10,000 adaptive signed requests
 * through an echo service, on the identity, split, gzip and server-sent-events paths,
 * against a bearer token in the union and an HMAC signing key. For every position it
 * sends every candidate byte and looks at everything it receives (status, headers, every
 * chunk boundary on the wire, body length, how the connection ended). It recovers nothing:
 * every candidate yields the same observation. The same attack against a relay that holds
 * back matched prefixes (the old behaviour) recovers the token, so the test can fail.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { attack, enrollAttacker, leaks, wireChunks, type Attacker } from './harness.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const BEARER = `nxs_${randomBytes(24).toString('base64url')}`;
const HMAC_KEY = randomBytes(24).toString('base64url');
const MODES = ['identity', 'split', 'gzip', 'sse'] as const;
type Mode = (typeof MODES)[number];
/** Positions each (target, mode) attack tries: 2 targets x 4 modes x 19 x 64 = 9,728 probes. */
const POSITIONS = 19;

/** What an agent sees of one response, as one comparable string. */
type Observe = (probe: string) => Promise<string>;

/** A deterministic random source for the attacker's guesses when it learns nothing. */
function seeded(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x80000000;
  };
}

/**
 * The adaptive attack: extend `known` one byte at a time, sending every candidate, and keep
 * the candidate whose observation stands out. Returns the guess and, per position, how many
 * distinct observations the candidates produced (1: nothing learned).
 */
async function recover(
  observe: Observe,
  known: string,
  positions: number,
  rand: () => number,
): Promise<{ guess: string; distinct: number[] }> {
  let guess = known;
  const distinct: number[] = [];
  for (let pos = 0; pos < positions; pos++) {
    const seen = new Map<string, string[]>();
    const candidates = [...ALPHABET];
    for (let i = 0; i < candidates.length; i += 16) {
      const batch = candidates.slice(i, i + 16);
      const results = await Promise.all(batch.map((c) => observe(guess + c)));
      batch.forEach((c, k) => {
        const key = results[k]!;
        seen.set(key, [...(seen.get(key) ?? []), c]);
      });
    }
    distinct.push(seen.size);
    // A candidate that looks unlike the rest is the signal; the old oracle's tell was a
    // longer final chunk (more bytes held back), so among several, take that one.
    const lastChunk = (key: string): number => {
      const chunks = (JSON.parse(key) as { chunks?: number[] }).chunks ?? [];
      return chunks.at(-1) ?? 0;
    };
    const unique = [...seen.entries()]
      .filter(([, cs]) => cs.length === 1)
      .sort(([a], [b]) => lastChunk(b) - lastChunk(a));
    guess +=
      unique.length > 0 && seen.size > 1
        ? unique[0]![1][0]!
        : candidates[Math.floor(rand() * candidates.length)]!;
  }
  return { guess, distinct };
}

/** How many positions of `guess` after `from` hold the secret's byte. */
function correct(guess: string, secret: string, from: number): number {
  let n = 0;
  for (let i = from; i < guess.length; i++) if (guess[i] === secret[i]) n++;
  return n;
}

describe('issue 10: the redactor is no prefix oracle', () => {
  let upstream: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    // An echo API: the body back, whole, in two writes, gzip-compressed, or as an SSE event.
    upstream.handle(async (req, res) => {
      const mode = new URL(req.url, 'http://x').searchParams.get('mode') as Mode | null;
      const body = Buffer.concat([Buffer.from('echo: '), req.body]);
      switch (mode) {
        case 'split':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write(body.subarray(0, body.length >> 1));
          await new Promise((r) => setTimeout(r, 2));
          res.end(body.subarray(body.length >> 1));
          return;
        case 'gzip':
          res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
          res.end(gzipSync(body));
          return;
        case 'sse':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: ');
          res.write(body);
          await new Promise((r) => setTimeout(r, 2));
          res.end('\n\n');
          return;
        default:
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(body);
      }
    });
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'none' } },
        bearer: { upstream: upstream.url, auth: { type: 'bearer', credential: 'bearer-token' } },
        signed: {
          upstream: upstream.url,
          auth: { type: 'hmac', credential: 'hmac-key', preset: 'stripe-webhook' },
        },
      },
      agents: { mallory: { roles: ['attacker'] } },
      policies: [{ id: 'all', allow: { roles: ['attacker'], methods: ['*'] } }],
      overrides: { log: { level: 'info' } },
    });
    await node.setCredential('bearer-token', { value: BEARER });
    await node.setCredential('hmac-key', { secret: HMAC_KEY });
    agent = await enrollAttacker(node, 'mallory');
    // Both secrets are now in use: the token is in every response's matcher (the union).
    expect((await attack(node, agent, '/bearer/x')).status).toBe(200);
    expect((await attack(node, agent, '/signed/x', { method: 'POST', body: '{}' })).status).toBe(
      200,
    );
    expect(upstream.requests.some((r) => r.headers.authorization === `Bearer ${BEARER}`)).toBe(
      true,
    );
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  /** One signed probe through the echo service; everything the agent can compare. */
  const throughNexus =
    (mode: Mode): Observe =>
    async (probe) => {
      const r = await attack(node, agent, `/echo/probe?mode=${mode}`, {
        method: 'POST',
        body: probe,
        headers: { 'content-type': 'text/plain' },
      });
      expect(leaks([r.wire, r.body], [BEARER, HMAC_KEY])).toEqual([]);
      return JSON.stringify({
        status: r.status,
        headers: Object.keys(r.headers).sort(),
        chunks: wireChunks(r.wire),
        length: r.body.length,
        aborted: r.aborted,
      });
    };

  for (const [name, secret, known] of [
    ["another service's bearer token", BEARER, 'nxs_'],
    ['an HMAC signing key', HMAC_KEY, ''],
  ] as const) {
    it(`${name}: no candidate stands out, on any path`, async () => {
      const rand = seeded(0x5eed);
      for (const mode of MODES) {
        const { guess, distinct } = await recover(throughNexus(mode), known, POSITIONS, rand);
        // Every candidate looked the same at every position: the agent learned nothing...
        expect(distinct, mode).toEqual(Array(POSITIONS).fill(1));
        // ...so its guess is chance (1/64 per byte: 19 bytes, 4 or more right ~ 1 in 5,000).
        expect(correct(guess, secret, known.length), mode).toBeLessThan(4);
      }
    }, 600_000);
  }

  it('the same attack recovers the token from a relay that holds back matched prefixes', async () => {
    // The old redactor's behaviour, in a few lines: the longest tail of the body that
    // starts the secret is held back and written as its own last chunk.
    const secret = BEARER;
    const leaky: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = `echo: ${Buffer.concat(chunks).toString()}`;
        let hold = 0;
        for (let k = Math.min(body.length, secret.length - 1); k > 0; k--) {
          if (secret.startsWith(body.slice(-k))) {
            hold = k;
            break;
          }
        }
        res.writeHead(200, { 'content-type': 'text/plain' });
        if (body.length > hold) res.write(body.slice(0, body.length - hold));
        setTimeout(() => res.end(body.slice(body.length - hold)), 1);
      });
    });
    await new Promise<void>((r) => leaky.listen(0, '127.0.0.1', r));
    const { port } = leaky.address() as AddressInfo;
    const observe: Observe = (probe) =>
      new Promise((resolve, reject) => {
        const wire: Buffer[] = [];
        const req = httpRequest({ port, method: 'POST', path: '/', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(JSON.stringify({ chunks: wireChunks(Buffer.concat(wire)) })));
        });
        req.on('socket', (s) => s.on('data', (c: Buffer) => wire.push(c)));
        req.on('error', reject);
        req.end(probe);
      });
    try {
      const { guess } = await recover(observe, 'nxs_', 8, seeded(1));
      expect(guess).toBe(secret.slice(0, 12));
    } finally {
      await new Promise((r) => leaky.close(r));
    }
  });
});
