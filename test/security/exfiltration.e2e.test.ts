/**
 * Issue 6, exfiltration: a compromised agent gets an upstream to reflect the injected
 * credential back (headers, body, trailers, status text, Location, cookies, error pages),
 * in every encoding, split across chunks, compressed, or through a redirect to another
 * origin. Every test asserts the exact status and that no byte the agent received holds
 * a secret in any form. One real `nexus up` for the whole file.
 */
import { gzipSync, brotliCompressSync, deflateSync, deflateRawSync } from 'node:zlib';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type TestNode } from '../helpers/node.js';
import { startUpstream, type RecordedRequest, type TestUpstream } from '../helpers/upstream.js';
import { attack, enrollAttacker, everything, leaks, type Attacker } from './harness.js';

const BEARER = 'nxs_Bearer/Token+Value=0123456789abcdefXYZ';
const BASIC_USER = 'svc-user-4242-basic';
const BASIC_PASS = 'P@ss/word+basic=99887766';
const QUERY_KEY = 'qk_live_Query/Key+1234567890&x=y';
const HEADER_KEY = 'hk-Header-Key-abcdefghijklmnop';
// Stored with the whitespace a careless `credential set` keeps; HTTP trims it on the way out.
const SPACED = 'ws_Token-0123456789abcdef';
const SECRETS = [BEARER, BASIC_USER, BASIC_PASS, QUERY_KEY, HEADER_KEY, SPACED];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The injected credential as the upstream sees it, whatever the mechanic. */
function injected(req: RecordedRequest): string {
  const auth = String(req.headers.authorization ?? '');
  if (auth.startsWith('Bearer ')) return auth.slice(7);
  return auth || String(req.headers['x-api-key'] ?? '') || req.url;
}

describe('exfiltration: the upstream reflects the injected credential', () => {
  let upstream: TestUpstream;
  let elsewhere: TestUpstream;
  let node: TestNode;
  let agent: Attacker;

  beforeAll(async () => {
    upstream = await startUpstream();
    elsewhere = await startUpstream();
    node = await startNode({
      services: {
        bearer: { upstream: upstream.url, auth: { type: 'bearer', credential: 'bearer-token' } },
        basic: { upstream: upstream.url, auth: { type: 'basic', credential: 'basic-cred' } },
        query: {
          upstream: upstream.url,
          auth: { type: 'query', credential: 'query-key', param: 'api_key' },
        },
        header: {
          upstream: upstream.url,
          auth: { type: 'header', credential: 'header-key', name: 'x-api-key' },
        },
        spaced: { upstream: upstream.url, auth: { type: 'bearer', credential: 'spaced-token' } },
      },
      agents: { mallory: { roles: ['attacker'] } },
      policies: [{ id: 'all', allow: { roles: ['attacker'], methods: ['*'] } }],
    });
    await node.setCredential('bearer-token', { value: BEARER });
    await node.setCredential('basic-cred', { username: BASIC_USER, password: BASIC_PASS });
    await node.setCredential('query-key', { value: QUERY_KEY });
    await node.setCredential('header-key', { value: HEADER_KEY });
    await node.setCredential('spaced-token', { value: `${SPACED} \t ` });
    agent = await enrollAttacker(node, 'mallory');
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
    await elsewhere?.close();
  });

  async function reflect(
    handler: (req: RecordedRequest, res: ServerResponse, secret: string) => void | Promise<void>,
    target = '/bearer/reflect',
  ) {
    upstream.reset();
    upstream.handle((req, res) => handler(req, res, injected(req)));
    const r = await attack(node, agent, target);
    expect(upstream.requests).toHaveLength(1);
    expect(leaks(everything(r), SECRETS)).toEqual([]);
    return r;
  }

  it('body echo of every request header (plain)', async () => {
    const r = await reflect((req, res) => {
      res.end(JSON.stringify(req.headers));
    });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toContain('[REDACTED]');
  });

  it('response header value', async () => {
    const r = await reflect((_q, res, s) => {
      res.setHeader('x-echo', `token=${s}`);
      res.end('ok');
    });
    expect(r.status).toBe(200);
    expect(r.headers['x-echo']).toBe('token=[REDACTED]');
  });

  it('a multi-valued response header', async () => {
    const r = await reflect((_q, res, s) => {
      res.setHeader('x-echo', ['first', s, `Bearer ${s}`]);
      res.end('ok');
    });
    expect(r.status).toBe(200);
  });

  it('a response header name made of the secret (hex)', async () => {
    const r = await reflect((_q, res, s) => {
      res.setHeader(`x-${Buffer.from(s).toString('hex')}`, '1');
      res.end('ok');
    });
    // Regression (issue 6): a redacted name is not a valid field name; relaying it made
    // the whole response fail with 500 internal_error. The header is now dropped whole.
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('ok');
    expect(Object.keys(r.headers).filter((h) => h.startsWith('x-6e'))).toEqual([]);
  });

  it('status text', async () => {
    const r = await reflect((_q, res, s) => {
      res.statusMessage = `Token ${s}`;
      res.end('ok');
    });
    expect(r.status).toBe(200);
    expect(r.statusMessage).toBe('OK');
  });

  it('trailers', async () => {
    const r = await reflect((_q, res, s) => {
      res.setHeader('trailer', 'x-leak');
      res.write('body');
      res.addTrailers({ 'x-leak': s });
      res.end();
    });
    expect(r.status).toBe(200);
    expect(r.trailers).toEqual([]);
    expect(r.body.toString()).toBe('body');
  });

  it('Location of a 302, percent-encoded in a query string', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(302, { location: `https://evil.example/cb?token=${encodeURIComponent(s)}` });
      res.end();
    });
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe('https://evil.example/cb?token=[REDACTED]');
  });

  it('a redirect to another origin is relayed, never followed', async () => {
    elsewhere.reset();
    for (const status of [301, 302, 303, 307, 308]) {
      const r = await reflect((_q, res) => {
        res.writeHead(status, { location: `${elsewhere.url}/steal` });
        res.end();
      });
      expect(r.status).toBe(status);
      expect(r.headers.location).toBe(`${elsewhere.url}/steal`);
    }
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('Set-Cookie and WWW-Authenticate carrying the token are removed', async () => {
    const r = await reflect((_q, res, s) => {
      res.setHeader('set-cookie', [`session=${s}`, `b=${Buffer.from(s).toString('base64')}`]);
      res.setHeader('www-authenticate', `Bearer error="invalid_token", token="${s}"`);
      res.setHeader('authentication-info', `nexttoken=${s}`);
      res.statusCode = 401;
      res.end();
    });
    expect(r.status).toBe(401);
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(r.headers['www-authenticate']).toBeUndefined();
    expect(r.headers['authentication-info']).toBeUndefined();
  });

  it('an HTML error page (500) quoting the request', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(500, { 'content-type': 'text/html' });
      res.end(`<h1>Internal error</h1><pre>Authorization: Bearer ${s}</pre>`);
    });
    expect(r.status).toBe(500);
    expect(r.body.toString()).toBe(
      '<h1>Internal error</h1><pre>Authorization: Bearer [REDACTED]</pre>',
    );
  });

  for (const [name, encode] of [
    ['base64', (s: string) => Buffer.from(s).toString('base64')],
    ['base64url', (s: string) => Buffer.from(s).toString('base64url')],
    [
      'base64 inside a larger base64 blob',
      (s: string) => Buffer.from(`{"a":"x","t":"${s}"}`).toString('base64'),
    ],
    ['percent-encoded (component)', (s: string) => encodeURIComponent(s)],
    [
      'percent-encoded (every byte, lower case)',
      (s: string) => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''),
    ],
    ['form-urlencoded', (s: string) => new URLSearchParams({ t: s }).toString()],
    ['hex (lower case)', (s: string) => Buffer.from(s).toString('hex')],
    ['hex (upper case)', (s: string) => Buffer.from(s).toString('hex').toUpperCase()],
    ['JSON-escaped (\\/)', (s: string) => JSON.stringify(s).replace(/\//g, '\\/')],
  ] as const) {
    it(`body in ${name}`, async () => {
      const r = await reflect((_q, res, s) => {
        res.end(`before ${encode(s)} after`);
      });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toMatch(/^before .*\[REDACTED\].* after$/);
    });
  }

  // Issue 10: encodings that ordinary upstreams produce, in the body and in every header an
  // agent can read, as the redactor's views must decode them (any mix of case and escaping).
  const unicodeEscape = (c: string) =>
    [...c].map((u) => `\\u${u.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`).join('');
  for (const [name, encode] of [
    [
      'JSON as .NET escapes it (+ < > & \' " as \\uXXXX)',
      (s: string) =>
        JSON.stringify(s)
          .slice(1, -1)
          .replace(/[+<>&']/g, unicodeEscape),
    ],
    [
      'JSON with every character as \\u (lower case)',
      (s: string) =>
        [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
    ],
    [
      'HTML decimal references',
      (s: string) => [...s].map((c) => `&#${c.codePointAt(0)};`).join(''),
    ],
    [
      'HTML hex references (&#x2b;, &#X2F;)',
      (s: string) =>
        [...s].map((c, i) => `&#${i % 2 ? 'X' : 'x'}${c.codePointAt(0)!.toString(16)};`).join(''),
    ],
    [
      "partial percent-encoding (Python quote keeps '/')",
      (s: string) => encodeURIComponent(s).replace(/%2F/g, '/'),
    ],
    ['hex with colons', (s: string) => Buffer.from(s).toString('hex').match(/../g)!.join(':')],
    [
      'hex with spaces, upper case',
      (s: string) => Buffer.from(s).toString('hex').toUpperCase().match(/../g)!.join(' '),
    ],
    [
      'hex, mixed case',
      (s: string) =>
        [...Buffer.from(s).toString('hex')].map((c, i) => (i % 3 ? c : c.toUpperCase())).join(''),
    ],
    [
      'base64 with JSON-escaped slashes',
      (s: string) => Buffer.from(`>${s}`).toString('base64').replace(/\//g, '\\/'),
    ],
  ] as const) {
    it(`issue 10: ${name}, in the body and in Location, Refresh, Link and x-* headers`, async () => {
      const r = await reflect((_q, res, s) => {
        const e = encode(s);
        res.setHeader('location', `https://app.example/cb?t=${e}`);
        res.setHeader('refresh', `0; url=https://app.example/?t=${e}`);
        res.setHeader('link', `<https://app.example/?t=${e}>; rel="next"`);
        res.setHeader('x-debug', e);
        res.end(`{"echo":"${e}"}`);
      });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toMatch(/^\{"echo":".*\[REDACTED\].*"\}$/);
      for (const h of ['location', 'refresh', 'link', 'x-debug']) {
        expect(String(r.headers[h]), h).toContain('[REDACTED]');
      }
    });
  }

  it('issue 10: a body compressed by Transfer-Encoding: gzip (with chunked) is decoded and redacted', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(200, { 'transfer-encoding': 'gzip, chunked' });
      res.end(gzipSync(`token=${s}`));
    });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('token=[REDACTED]');
  });

  it('issue 10: a body compressed by Transfer-Encoding: gzip alone (close-delimited) too', async () => {
    const r = await reflect((_q, res, s) => {
      const body = gzipSync(`token=${s}`);
      res.socket!.end(
        Buffer.concat([
          Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\n'),
          body,
        ]),
      );
    });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('token=[REDACTED]');
  });

  it('issue 10: a secret stored with surrounding whitespace, reflected as HTTP trimmed it', async () => {
    const r = await reflect((req, res) => {
      res.end(`auth=${String(req.headers.authorization)}`);
    }, '/spaced/reflect');
    expect(r.status).toBe(200);
    expect(upstream.requests[0]!.headers.authorization).toBe(`Bearer ${SPACED}`);
    expect(r.body.toString()).toBe('auth=Bearer [REDACTED]');
  });

  it('issue 10: query: the key as it travelled, encoded once more by a login redirect', async () => {
    // `return_to=<the request URL, encoded>`: the key travels percent-encoded, and comes
    // back encoded twice; one layer of decoding gives the travelled form.
    const r = await reflect((req, res) => {
      const back = encodeURIComponent(req.url);
      res.writeHead(302, { location: `/login?return_to=${back}` });
      res.end(`<a href="/login?return_to=${back}">login</a>`);
    }, '/query/login-redirect?page=2');
    expect(r.status).toBe(302);
    expect(String(r.headers.location)).toContain('[REDACTED]');
  });

  it('issue 10: basic: the Basic token itself, base64-encoded again and hex-dumped', async () => {
    const r = await reflect((req, res) => {
      const header = String(req.headers.authorization);
      const token = header.slice(6);
      res.setHeader('x-dump', Buffer.from(token).toString('hex').match(/../g)!.join(':'));
      res.end(
        Buffer.from(JSON.stringify({ headers: { authorization: header } })).toString('base64'),
      );
    }, '/basic/reflect');
    expect(r.status).toBe(200);
    expect(String(r.headers['x-dump'])).toContain('[REDACTED]');
    expect(r.body.toString()).toContain('[REDACTED]');
  });

  it('split across chunks, one byte at a time', async () => {
    const r = await reflect(async (_q, res, s) => {
      res.write('start:');
      for (const ch of s) {
        res.write(ch);
        await sleep(2);
      }
      res.end(':end');
    });
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('start:[REDACTED]:end');
  });

  it('a server-sent event stream splitting the token across events', async () => {
    const r = await reflect(async (_q, res, s) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${s.slice(0, 9)}`);
      await sleep(20);
      res.write(s.slice(9, 20));
      await sleep(20);
      res.end(`${s.slice(20)}\n\n`);
    });
    expect(r.status).toBe(200);
  });

  for (const [coding, compress] of [
    ['gzip', gzipSync],
    ['x-gzip', gzipSync],
    ['br', brotliCompressSync],
    ['deflate', deflateSync],
    ['deflate (raw)', deflateRawSync],
  ] as const) {
    it(`a ${coding}-compressed body`, async () => {
      const r = await reflect((_q, res, s) => {
        res.writeHead(200, { 'content-encoding': coding.split(' ')[0] as string });
        // Two copies, one base64, in a compressed stream flushed in small pieces.
        const packed = compress(Buffer.from(`x${s}y${Buffer.from(s).toString('base64')}z`));
        res.write(packed.subarray(0, 5));
        res.end(packed.subarray(5));
      });
      expect(r.status).toBe(200);
      expect(r.headers['content-encoding']).toBeUndefined();
      expect(r.body.toString()).toBe('x[REDACTED]y[REDACTED]z');
    });
  }

  it('an undecodable coding (zstd) fails closed', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(200, { 'content-encoding': 'zstd' });
      res.end(s);
    });
    expect(r.status).toBe(502);
    expect(r.code).toBe('upstream_invalid');
  });

  it('stacked codings fail closed', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(200, { 'content-encoding': 'gzip, br' });
      res.end(brotliCompressSync(gzipSync(s)));
    });
    expect(r.status).toBe(502);
    expect(r.code).toBe('upstream_invalid');
  });

  it('a body that lies about being gzip is cut, not relayed', async () => {
    const r = await reflect((_q, res, s) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(`plain text ${s}`);
    });
    expect(r.status).toBe(200);
    expect(r.aborted).toBe(true);
    expect(r.body.length).toBe(0);
  });

  it('basic: the header, the password alone and user:pass decoded', async () => {
    const r = await reflect((req, res) => {
      const header = String(req.headers.authorization);
      const decoded = Buffer.from(header.slice(6), 'base64').toString();
      res.setHeader('x-user', decoded.split(':')[0] as string);
      res.end(`${header}\n${decoded}\n${decoded.split(':')[1]}`);
    }, '/basic/reflect');
    expect(r.status).toBe(200);
    // The base64 view redacts every digit carrying a bit of `user:pass` (the padding stays).
    expect(r.body.toString()).toMatch(/^Basic \[REDACTED\]=*\n\[REDACTED\]\n\[REDACTED\]$/);
    expect(r.headers['x-user']).toBe('[REDACTED]');
  });

  it('query: the upstream URL, the key decoded, and a Location built from it', async () => {
    const r = await reflect((req, res) => {
      const key = new URL(req.url, 'http://x').searchParams.get('api_key') ?? '';
      res.writeHead(302, { location: `http://evil.example${req.url}` });
      res.end(`${req.url}\n${key}`);
    }, '/query/reflect?q=1');
    expect(r.status).toBe(302);
    expect(r.body.toString()).not.toContain('api_key=qk');
    expect(String(r.headers.location)).toContain('[REDACTED]');
  });

  for (const spelling of [
    'api_key=mine',
    'api%5Fkey=mine',
    'API_KEY=mine',
    'api_key[]=mine',
    'api_key%5B%5D=mine',
    'api.key=mine',
    'api+key=mine',
    'api_key%00=mine',
    'api-key=mine',
    'x=1;api_key=mine',
  ]) {
    it(`query: an agent-supplied ${spelling} next to the injected api_key is refused (query_param_reserved), audited, nothing forwarded`, async () => {
      // Regression (issue 10): the exact name was replaced, but the look-alikes were kept,
      // and a server that reads API_KEY, api_key[], api.key, api+key or api_key%00 as
      // api_key took the agent's value (or both) for the credential.
      upstream.reset();
      const r = await attack(node, agent, `/query/x?page=2&${spelling}`);
      expect(r.status).toBe(400);
      expect(r.code).toBe('query_param_reserved');
      expect(upstream.requests).toHaveLength(0);
      const requestId = r.headers['nexus-request-id'] as string;
      const audit = await node.admin<{ records: { kind: string; error_code?: string }[] }>(
        'GET',
        `/v1/audit?request_id=${requestId}`,
      );
      expect(audit.body.records.map((x) => [x.kind, x.error_code])).toEqual([
        ['request', 'query_param_reserved'],
      ]);
      expect(r.body.toString()).not.toContain('mine');
      expect(leaks(everything(r), SECRETS)).toEqual([]);
    });
  }

  it('query: other parameters pass byte for byte beside the injected one', async () => {
    upstream.reset();
    const r = await attack(node, agent, '/query/x?apikey_hint=1&my_api_key=2&q=api_key%3Dx&b=%7E');
    expect(r.status).toBe(200);
    expect(upstream.requests[0]!.url).toBe(
      `/x?apikey_hint=1&my_api_key=2&q=api_key%3Dx&b=%7E&api_key=${encodeURIComponent(QUERY_KEY)}`,
    );
    expect(leaks(everything(r), SECRETS)).toEqual([]);
  });

  it('header mechanic: x-api-key reflected in header and body', async () => {
    const r = await reflect((req, res) => {
      res.setHeader('x-seen', String(req.headers['x-api-key']));
      res.end(`key=${String(req.headers['x-api-key'])}`);
    }, '/header/reflect');
    expect(r.status).toBe(200);
    expect(r.headers['x-seen']).toBe('[REDACTED]');
  });

  it("another service's credential, reflected by an upstream that kept it, is redacted too", async () => {
    // The upstream of `header` keeps the last request it saw on `bearer` (two services on
    // one host, or a shared log): the bearer token must not come back through `header`.
    let last = '';
    upstream.handle((req, res) => {
      if (req.url === '/store') last = String(req.headers.authorization);
      res.end(req.url === '/last' ? `last=${last}` : 'ok');
    });
    expect((await attack(node, agent, '/bearer/store')).status).toBe(200);
    const r = await attack(node, agent, '/header/last');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('last=Bearer [REDACTED]');
    expect(leaks(everything(r), SECRETS)).toEqual([]);
  });

  it('Range requests cannot fetch the reflected token in slices shorter than itself', async () => {
    // Regression (issue 6): a Range header was forwarded, so an upstream honouring it
    // returned 206 slices of a body holding the credential; each slice is shorter than the
    // secret and passed the scrubber, and the agent reassembled the token from the slices.
    upstream.reset();
    upstream.handle((req, res) => {
      const body = Buffer.from(`token=${String(req.headers.authorization)};`);
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
      if (m === null) return void res.end(body);
      res.writeHead(206, { 'content-range': `bytes ${m[1]}-${m[2]}/${body.length}` });
      res.end(body.subarray(Number(m[1]), Number(m[2]) + 1));
    });
    let assembled = '';
    for (let at = 0; at < 80; at += 6) {
      const r = await attack(node, agent, '/bearer/file', {
        headers: { range: `bytes=${at}-${at + 5}`, 'if-range': 'x' },
      });
      expect(r.status).toBe(200);
      assembled += r.body.toString();
    }
    expect(upstream.requests.every((q) => q.headers.range === undefined)).toBe(true);
    expect(upstream.requests.every((q) => q.headers['if-range'] === undefined)).toBe(true);
    expect(leaks(assembled, SECRETS)).toEqual([]);
  });

  it('the debug log of the whole file holds no secret', () => {
    expect(leaks(node.output(), SECRETS)).toEqual([]);
    expect(node.output()).not.toContain(node.operatorToken);
    expect(node.output()).not.toContain(agent.privateD);
  });
});
