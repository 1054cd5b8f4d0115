/**
 * Shared tools of the adversarial suite (issue 6): an attacker that holds a real lease and
 * its own key (so it can sign anything, or almost), raw HTTP over sockets for requests no
 * well-behaved client would send, a client that keeps every byte the agent received, and
 * the leak detector that looks for a secret in all its encodings.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT, importPKCS8 } from 'jose';
import {
  generateAgentKey,
  signMessage,
  signRequest,
  type AgentKeyPair,
  type ComponentInput,
  type LeaseClaims,
} from '@nexus-proxy/protocol';
import type { TestNode } from '../helpers/node.js';
import { openSqliteStore } from '../../packages/server/src/store/sqlite.js';
import { loadKeyring } from '../../packages/server/src/vault/master-key.js';
import { createVault } from '../../packages/server/src/vault/vault.js';

/** An agent as an attacker holds it: the lease and an extractable private key. */
export interface Attacker {
  readonly name: string;
  readonly lease: string;
  readonly claims: LeaseClaims;
  readonly key: AgentKeyPair;
  /** The private key's JWK `d` (to prove it never shows up in a log). */
  readonly privateD: string;
}

function decodeClaims(lease: string): LeaseClaims {
  return JSON.parse(
    Buffer.from(lease.split('.')[1] ?? '', 'base64url').toString('utf8'),
  ) as LeaseClaims;
}

/** Enrolls `name` over the wire with a fresh, extractable key (the attacker keeps it). */
export async function enrollAttacker(
  node: TestNode,
  name: string,
  alg: 'ed25519' | 'ecdsa-p256' = 'ed25519',
): Promise<Attacker> {
  const token = await node.enrollmentToken(name);
  const key = await generateAgentKey(alg, { extractable: true });
  const res = await fetch(`${node.proxyUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollment_token: token, jwk: key.publicJwk }),
  });
  if (res.status !== 201) throw new Error(`enroll ${name}: ${res.status} ${await res.text()}`);
  const { lease } = (await res.json()) as { lease: string };
  const jwk = await globalThis.crypto.subtle.exportKey('jwk', key.privateKey);
  return { name, lease, claims: decodeClaims(lease), key, privateD: jwk.d ?? '' };
}

export interface SignOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  intent?: string;
  now?: () => number;
  nonce?: string;
  ttlSeconds?: number;
  /** Sign with this lease instead of the attacker's (key stays the attacker's). */
  lease?: string;
}

/** The headers a well-formed signed request to `target` (`/svc/path?q`) carries. */
export async function signFor(
  node: TestNode,
  a: Attacker,
  target: string,
  o: SignOptions = {},
): Promise<Record<string, string>> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  const body = typeof o.body === 'string' ? Buffer.from(o.body) : o.body;
  if (body !== undefined && body.length > 0 && headers['content-type'] === undefined) {
    headers['content-type'] = 'application/octet-stream';
  }
  const added = await signRequest({
    method: o.method ?? 'GET',
    url: node.proxyUrl + target,
    headers,
    body,
    lease: o.lease ?? a.lease,
    key: a.key.privateKey,
    intent: o.intent ?? 'security suite',
    now: o.now,
    nonce: o.nonce,
    ttlSeconds: o.ttlSeconds,
  });
  return { ...headers, ...added };
}

/**
 * Signs with full control over the covered components and parameters (for omitted
 * components, label confusion, keyid/alg parameters, odd windows).
 */
export async function signCustom(
  node: TestNode,
  a: Attacker,
  target: string,
  o: {
    method?: string;
    headers?: Record<string, string>;
    components?: ComponentInput[];
    params?: Record<string, string | number | boolean>;
    label?: string;
    intent?: string;
    /** Parameters to leave out. */
    omit?: string[];
  } = {},
): Promise<Record<string, string>> {
  const now = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'workload-identity-token': a.lease,
    'nexus-intent': JSON.stringify(o.intent ?? 'security suite'),
    ...(o.headers ?? {}),
  };
  const params: Record<string, string | number | boolean> = {
    created: now,
    expires: now + 30,
    nonce: randomNonce(),
    tag: 'wimse-workload-to-workload',
    'wimse-aud': node.proxyUrl + target.split('?')[0],
    ...(o.params ?? {}),
  };
  for (const k of o.omit ?? []) delete params[k];
  const signed = await signMessage(
    { method: o.method ?? 'GET', url: node.proxyUrl + target, headers: Object.entries(headers) },
    {
      label: o.label ?? 'wimse',
      components: o.components ?? [
        '@method',
        '@request-target',
        'workload-identity-token',
        'nexus-intent',
      ],
      params,
      key: a.key.privateKey,
      algorithm: a.key.algorithm,
    },
  );
  return { ...headers, 'signature-input': signed.signatureInput, signature: signed.signature };
}

export function randomNonce(): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString('base64url');
}

/** Everything an agent received for one request, byte for byte. */
export interface Received {
  status: number;
  statusMessage: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  trailers: string[];
  body: Buffer;
  /** Every byte read from the socket (status line, headers, framing, body). */
  wire: Buffer;
  /** The problem `code` when the body is a Nexus problem. */
  code: string | undefined;
  /** True when the response ended abnormally (aborted mid-body). */
  aborted: boolean;
}

/** Sends one request with node:http (no redirects followed) and keeps every byte. */
export function send(
  base: string,
  target: string,
  o: {
    method?: string;
    headers?: Record<string, string | string[]>;
    body?: string | Uint8Array;
  } = {},
): Promise<Received> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const wire: Buffer[] = [];
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method: o.method ?? 'GET',
        path: target,
        headers: o.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let aborted = false;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => (aborted = true));
        res.on('error', () => (aborted = true));
        res.on('close', () => {
          const body = Buffer.concat(chunks);
          let code: string | undefined;
          if (String(res.headers['content-type'] ?? '').startsWith('application/problem+json')) {
            try {
              code = (JSON.parse(body.toString('utf8')) as { code?: string }).code;
            } catch {
              code = undefined;
            }
          }
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            trailers: res.rawTrailers,
            body,
            wire: Buffer.concat(wire),
            code,
            aborted: aborted || !res.complete,
          });
        });
      },
    );
    req.on('socket', (s) => s.on('data', (c: Buffer) => wire.push(c)));
    req.on('error', reject);
    if (o.body !== undefined) req.end(o.body);
    else req.end();
  });
}

/** Signs and sends in one go. */
export async function attack(
  node: TestNode,
  a: Attacker,
  target: string,
  o: SignOptions = {},
): Promise<Received> {
  const headers = await signFor(node, a, target, o);
  return send(node.proxyUrl, target, { method: o.method ?? 'GET', headers, body: o.body });
}

/**
 * Writes raw bytes to a listener and collects what comes back until the peer closes or
 * `quietMs` pass without data. Returns the response bytes as latin1 text.
 */
export function rawExchange(
  base: string,
  payload: string | Buffer | (string | Buffer)[],
  o: { quietMs?: number; gapMs?: number } = {},
): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, o.quietMs ?? 1500);
    };
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    socket.on('close', done);
    socket.on('error', (err) => (chunks.length > 0 ? done() : reject(err)));
    socket.on('connect', async () => {
      const parts = Array.isArray(payload) ? payload : [payload];
      for (const p of parts) {
        socket.write(p);
        if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
      }
      arm();
    });
  });
}

/** Status code of every HTTP response found in raw response text. */
export function statuses(raw: string): number[] {
  return [...raw.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
}

/** Problem codes found in raw response text. */
export function codes(raw: string): string[] {
  return [...raw.matchAll(/"code":"([a-z_]+)"/g)].map((m) => m[1] as string);
}

/** Builds a raw HTTP/1.1 request from a start line and header pairs. */
export function rawRequest(
  startLine: string,
  headers: [string, string][] | Record<string, string>,
  body = '',
): string {
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return `${startLine}\r\n${pairs.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
}

// ---------------------------------------------------------------------------------------
// Leak detection

function percentAll(bytes: Buffer, upper: boolean): string {
  let out = '';
  for (const b of bytes) {
    const h = b.toString(16).padStart(2, '0');
    out += '%' + (upper ? h.toUpperCase() : h);
  }
  return out;
}

/**
 * Every textual form of `secret` an agent could decode back: plain, base64 and base64url
 * in the three byte alignments (edges dropped, so it is found inside a larger encoding),
 * percent-encoded (component, form and every byte, both hex cases), hex (both cases) and
 * JSON-escaped.
 */
export function leakForms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set<string>([secret]);
  for (const shift of [0, 1, 2]) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    const full = padded.toString('base64').replace(/=+$/, '');
    const std = full.slice(Math.ceil((8 * shift) / 6), Math.floor((8 * padded.length) / 6));
    forms.add(std);
    forms.add(std.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  forms.add(encodeURIComponent(secret));
  forms.add(encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  forms.add(new URLSearchParams({ x: secret }).toString().slice(2));
  forms.add(percentAll(bytes, true));
  forms.add(percentAll(bytes, false));
  forms.add(bytes.toString('hex'));
  forms.add(bytes.toString('hex').toUpperCase());
  forms.add(JSON.stringify(secret).slice(1, -1));
  forms.add(JSON.stringify(secret).slice(1, -1).replace(/\//g, '\\/'));
  return [...forms].filter((f) => f.length >= 8);
}

/**
 * The escapes honest upstreams produce, undone by regular expressions (an implementation
 * independent of the redactor's decoder): JSON and JavaScript escapes, HTML numeric and
 * named references, then percent escapes (any subset, either case).
 */
export function unescapeAll(text: string): string {
  const named: Record<string, string> = {
    amp: '&',
    lt: '<',
    gt: '>',
    quot: '"',
    apos: "'",
    plus: '+',
    sol: '/',
    equals: '=',
  };
  const unescaped = text
    .replace(/\\u([0-9a-fA-F]{4})\\u([dD][c-fC-F][0-9a-fA-F]{2})/g, (_m, hi: string, lo: string) =>
      String.fromCharCode(parseInt(hi, 16), parseInt(lo, 16)),
    )
    .replace(/\\u([0-9a-fA-F]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/\\x([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/\\([/"'\\])/g, '$1')
    .replace(/&#[xX]([0-9a-fA-F]{1,6});/g, (_m, h: string) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]{1,7});/g, (_m, d: string) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&([a-z]+);/g, (m, n: string) => named[n] ?? m);
  // Percent escapes are bytes: decode runs of them as UTF-8.
  return unescaped.replace(/(%[0-9a-fA-F]{2})+/g, (run) =>
    Buffer.from(run.replace(/%/g, ''), 'hex').toString('utf8'),
  );
}

/** Which secrets (by index) leak in `data`, in any of their forms; [] when none. */
export function leaks(
  data: string | Buffer | (string | Buffer)[],
  secrets: readonly string[],
): string[] {
  const parts = Array.isArray(data) ? data : [data];
  const text = parts
    .map((p) => (typeof p === 'string' ? p : [p.toString('latin1'), p.toString('utf8')].join('\n')))
    .join('\n');
  const decoded = unescapeAll(text);
  // Hex in either case, with separators between the digits.
  const hexText = text.toLowerCase().replace(/[ :.-]/g, '');
  const found: string[] = [];
  secrets.forEach((s, i) => {
    const hex = Buffer.from(s.trim(), 'utf8').toString('hex');
    for (const f of leakForms(s)) {
      if (text.includes(f) || decoded.includes(f)) {
        found.push(`secret#${i} as ${JSON.stringify(f.slice(0, 6))}...`);
        return;
      }
    }
    if (hex.length >= 16 && hexText.includes(hex)) found.push(`secret#${i} as hex`);
  });
  return found;
}

/**
 * The chunk sizes of a chunked HTTP/1.1 response as they were on the wire (the
 * terminating zero-size chunk excluded); undefined when the response was not chunked.
 */
export function wireChunks(wire: Buffer): number[] | undefined {
  const head = wire.indexOf('\r\n\r\n');
  if (head < 0) return undefined;
  if (!/\r\ntransfer-encoding: *chunked/i.test(wire.subarray(0, head).toString('latin1'))) {
    return undefined;
  }
  const sizes: number[] = [];
  let at = head + 4;
  for (;;) {
    const eol = wire.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(wire.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    sizes.push(size);
    at = eol + 2 + size + 2;
  }
  return sizes;
}

/** Every byte of a received response as one list, for {@link leaks}. */
export function everything(r: Received): (string | Buffer)[] {
  return [r.wire, r.body, r.statusMessage, r.rawHeaders.join('\n'), r.trailers.join('\n')];
}

/** Every file under `dir`, recursively. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

/** The bytes of every file under `dir`. */
export async function bytesUnder(dir: string): Promise<Buffer[]> {
  return Promise.all((await filesUnder(dir)).map((f) => readFile(f)));
}

// ---------------------------------------------------------------------------------------
// Crafted leases. An insider test instrument: it opens the node's store read-only with the
// node's master key to mint leases signed by the real Authority key with exactly the
// claims a test needs (expired, not yet valid, foreign audience...). Agents never have this.

export interface Minter {
  readonly kid: string;
  mint(claims: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export async function authorityMinter(node: TestNode): Promise<Minter> {
  const store = openSqliteStore(join(node.dir, '.nexus', 'nexus.db'), { readonly: true });
  const keyring = loadKeyring({ keyFile: join(node.dir, '.nexus', 'master.key') });
  const vault = createVault({ store, keyring, clock: Date.now });
  const rows = await store.listSigningKeys();
  const row = rows.find((r) => r.status === 'active');
  if (row === undefined) throw new Error('no active signing key');
  const pem = Buffer.from(await vault.open(`authority-key:${row.kid}`, row.privateKeyEnc)).toString(
    'utf8',
  );
  const key = await importPKCS8(pem, row.alg);
  return {
    kid: row.kid,
    async mint(claims, header = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: row.alg, typ: 'wit+jwt', kid: row.kid, ...header } as never)
        .sign(key);
    },
    close: () => store.close(),
  };
}

/** Claims of a valid lease for `a`, to be altered by a test. */
export function leaseClaims(node: TestNode, a: Attacker, over: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: node.proxyUrl,
    aud: node.proxyUrl,
    sub: a.claims.sub,
    iat: now,
    nbf: now,
    exp: now + 600,
    jti: randomNonce() + 'xx',
    scope: a.claims.scope,
    cnf: { jwk: a.key.publicJwk },
    ...over,
  };
}

/**
 * Restarts the node and waits until the new process answers. (`TestNode.restart` returns
 * as soon as the log holds the listening line, which the previous process already wrote.)
 */
export async function restartAndWait(node: TestNode, crash = false): Promise<void> {
  const before = node.process.pid;
  // On a crash, `restart` must register for the exit before it happens (same tick): the
  // SIGTERM it then sends is moot, SIGKILL was delivered first and no shutdown code runs.
  if (crash) node.process.kill('SIGKILL');
  await node.restart();
  for (let i = 0; i < 200; i++) {
    if (node.process.pid !== before) {
      try {
        const r = await fetch(`${node.adminUrl}/v1/health`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('node did not come back');
}
