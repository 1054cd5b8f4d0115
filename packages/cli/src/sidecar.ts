/**
 * The local signing sidecar of `nexus run`: listens on 127.0.0.1, signs each request the
 * child sends with the agent's in-memory lease key and relays it to the proxy, streaming
 * the (already scrubbed) response back.
 *
 * MUST: it binds loopback only. MUST: it signs only `/{service}/{path}` targets that pass
 * the proxy's routing rules (`parseRoute`); the key and lease never leave this process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NexusError, parseRoute } from '@nexus/protocol';
import type { NexusAgent } from '@nexus/sdk';
import { NexusAgentError } from '@nexus/sdk';

// Headers of the child's request that are the sidecar's business, not the proxy's.
const DROP = new Set([
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'te',
  'upgrade',
  'expect',
  'proxy-connection',
  'nexus-intent',
  'workload-identity-token',
  'signature',
  'signature-input',
]);
const RESPONSE_DROP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'content-encoding',
]);

export interface Sidecar {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Reads the child's body. Past `max` it rejects with `body_too_large` and discards the
 * rest (up to `2 x max` in all, then the connection is closed): a client still uploading
 * when its connection closes sees a reset, not the 413.
 */
function readAll(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (refused) {
        if (total > 2 * max) req.socket.destroy();
        return;
      }
      if (total > max) {
        refused = true;
        chunks.length = 0;
        reject(new NexusAgentError('body_too_large', 'request body too large', { status: 413 }));
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => {
      if (!refused) resolve(Buffer.concat(chunks));
    });
    req.once('error', (err) => {
      if (!refused) reject(err);
    });
  });
}

function problem(res: ServerResponse, status: number, code: string, title: string): void {
  const body = JSON.stringify({ type: `urn:nexus:problem:${code}`, title, status, code });
  res.writeHead(status, { 'content-type': 'application/problem+json', 'nexus-error': code });
  res.end(body);
}

/**
 * Where a `nexus run` started by the child asks for a sub-lease (spec §12.4) instead of
 * enrolling: `POST` with `{ jwk, roles?, ttl_seconds? }`, the public key of a key the
 * inner process generated. The answer is a lease for that key only, never wider than this
 * agent's own; the child could use this sidecar as this agent anyway, so it gains nothing.
 */
export const DELEGATE_PATH = '/.well-known/nexus-delegate';

async function delegateFor(req: IncomingMessage, res: ServerResponse, agent: NexusAgent) {
  if (req.method !== 'POST') {
    problem(res, 405, 'method_not_allowed', 'POST a public key to delegate to');
    return;
  }
  let parsed: { jwk?: unknown; roles?: unknown; ttl_seconds?: unknown };
  try {
    parsed = JSON.parse((await readAll(req, 16 * 1024)).toString('utf8')) as typeof parsed;
  } catch {
    problem(res, 400, 'validation_failed', 'the body is not a JSON object');
    return;
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.jwk !== 'object') {
    problem(res, 400, 'validation_failed', 'jwk is required');
    return;
  }
  const granted = await agent.delegateKey(parsed.jwk as Record<string, unknown>, {
    ...(Array.isArray(parsed.roles) ? { roles: parsed.roles as string[] } : {}),
    ...(typeof parsed.ttl_seconds === 'number' ? { ttlSeconds: parsed.ttl_seconds } : {}),
  });
  const body = JSON.stringify({
    lease: granted.lease,
    proxy_url: granted.proxyUrl,
    authority: granted.authority,
  });
  res.writeHead(201, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

export async function startSidecar(
  agent: NexusAgent,
  options: { intent?: string; maxBodyBytes?: number } = {},
): Promise<Sidecar> {
  let port = 0;
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        // MUST: only loopback names for this very port. A web page that rebinds its own
        // DNS name to 127.0.0.1 sends its own Host and is refused here.
        const host = req.headers.host ?? '';
        if (![`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`].includes(host)) {
          problem(
            res,
            403,
            'forbidden',
            'the sidecar answers only requests addressed to its loopback port',
          );
          return;
        }
        // MUST: no browser request. A page on any site can send a simple cross-origin POST
        // to a loopback port; browsers mark those with Origin / Sec-Fetch-Site, tools do not.
        const site = req.headers['sec-fetch-site'];
        if (req.headers.origin !== undefined || (site !== undefined && site !== 'none')) {
          problem(res, 403, 'forbidden', 'the sidecar does not answer browser requests');
          return;
        }
        // MUST: the target is checked with the proxy's own routing rules on the raw
        // request line, before anything is signed. A valid service name and a path that
        // cannot escape it, or a problem: `/../v1/...`, `/%2e%2e/...` and the Authority's
        // prefixes (lease renewal, discovery: the sidecar's own business) never get signed.
        if (req.url === DELEGATE_PATH) {
          await delegateFor(req, res, agent);
          return;
        }
        const route = parseRoute(req.url ?? '');
        const target = route.rawPath + (route.query === '' ? '' : `?${route.query}`);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headersDistinct)) {
          if (v === undefined || DROP.has(k)) continue;
          headers[k] = v.join(', ');
        }
        // The node's own limit when it advertises one: a larger body is refused here.
        const body = await readAll(
          req,
          options.maxBodyBytes ?? agent.maxBodyBytes ?? 10 * 1024 * 1024,
        );
        // A per-request intent may be given by the child in `Nexus-Intent` as plain text.
        const intentHeader = req.headers['nexus-intent'];
        const intent = typeof intentHeader === 'string' ? intentHeader : (options.intent ?? '');
        const upstream = await agent.fetch(route.service, target, {
          method: req.method,
          headers,
          body: body.length > 0 ? body : undefined,
          intent,
        });
        const out: Record<string, string | string[]> = {};
        // An upstream's answer (agent.fetch throws for a refusal by Nexus): `Nexus-Error`
        // here would be taken by the child for a refusal, so it is never relayed (the proxy
        // already drops every upstream `Nexus-*` field).
        upstream.headers.forEach((value, key) => {
          if (!RESPONSE_DROP.has(key) && key !== 'nexus-error') out[key] = value;
        });
        res.writeHead(upstream.status, out);
        res.flushHeaders();
        if (upstream.body === null) {
          res.end();
          return;
        }
        // pipeline: an upstream cut off mid-body aborts this response (no crash), and a
        // child that hangs up cancels the download from the proxy.
        await pipeline(Readable.fromWeb(upstream.body as never), res).catch(() => res.destroy());
      } catch (err) {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof NexusError) {
          // Refused before sending (bad intent, lease expired): the protocol's own code.
          problem(res, err.status, err.code, err.message);
          return;
        }
        if (err instanceof NexusAgentError) {
          const body = JSON.stringify({
            type: `urn:nexus:problem:${err.code}`,
            title: err.message,
            status: err.status ?? 502,
            code: err.code,
            detail: err.detail,
            request_id: err.requestId,
          });
          res.writeHead(err.status ?? 502, {
            'content-type': 'application/problem+json',
            'nexus-error': err.code,
          });
          res.end(body);
          return;
        }
        problem(res, 502, 'proxy_unreachable', 'the sidecar could not complete the request');
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
