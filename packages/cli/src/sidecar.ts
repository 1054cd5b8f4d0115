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
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NexusError, mcpRefusal, parseRoute } from '@nexus-proxy/protocol';
import type { NexusAgent } from '@nexus-proxy/sdk';
import { NexusAgentError, defaultMcpIntent, intentText, mcpOutgoing } from '@nexus-proxy/sdk';
import { holdsDummyKey, queryWithoutDummyKey } from './reach.js';
import { createForwardProxy, type ForwardProxyOptions } from './forward-proxy.js';
import { problem } from './sidecar-problem.js';
import { adoptUpgrade, isUpgrade, relayUpgrade } from './sidecar-upgrade.js';

/** The JSON-RPC message a JSON body carries (an MCP client's), if it is one. */
function mcpMessage(
  contentType: string | undefined,
  body: Buffer,
): ReturnType<typeof mcpOutgoing> | undefined {
  if (body.length === 0 || !/^application\/json\s*(;|$)/i.test(contentType ?? '')) return undefined;
  const parsed = mcpOutgoing(body.toString('utf8'));
  return parsed.msg.method === undefined ? undefined : parsed;
}

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

export interface SidecarOptions {
  intent?: string;
  maxBodyBytes?: number;
  /** Forward-proxy mode (issue 11): the hosts services own, and the run's CA. */
  forward?: ForwardProxyOptions;
}

/**
 * Where a `nexus run` started by the child asks for a sub-lease (spec §12.5) instead of
 * enrolling: `POST` with `{ jwk, roles?, services?, intent_pattern?, ttl_seconds? }`, the public key of a key the
 * inner process generated. The answer is a lease for that key only, never wider than this
 * agent's own; the child could use this sidecar as this agent anyway, so it gains nothing.
 */
export const DELEGATE_PATH = '/.well-known/nexus-delegate';

async function delegateFor(req: IncomingMessage, res: ServerResponse, agent: NexusAgent) {
  if (req.method !== 'POST') {
    problem(res, 405, 'method_not_allowed', 'POST a public key to delegate to');
    return;
  }
  let parsed: {
    jwk?: unknown;
    roles?: unknown;
    ttl_seconds?: unknown;
    services?: unknown;
    intent_pattern?: unknown;
  };
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
    // Passed as given: the Authority refuses a malformed or wider one (spec §12.5).
    ...(parsed.services !== undefined ? { services: parsed.services as string[] } : {}),
    ...(parsed.intent_pattern !== undefined
      ? { intentPattern: parsed.intent_pattern as string }
      : {}),
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
  options: SidecarOptions = {},
): Promise<Sidecar> {
  let port = 0;

  /**
   * Signs and relays one request of the child to `service` at `target` (origin-form, the
   * path under the service). Every way in (path mode, base-URL mode, forward-proxy mode)
   * ends here: one signing path, one set of checks.
   */
  const relay = async (
    req: IncomingMessage,
    res: ServerResponse,
    target: string,
  ): Promise<void> => {
    let rpc: ReturnType<typeof mcpOutgoing> | undefined;
    try {
      // MUST: no browser request. A page on any site can send a simple cross-origin POST
      // to a loopback port; browsers mark those with Origin / Sec-Fetch-Site, tools do not.
      const site = req.headers['sec-fetch-site'];
      if (req.headers.origin !== undefined || (site !== undefined && site !== 'none')) {
        problem(res, 403, 'forbidden', 'the sidecar does not answer browser requests');
        return;
      }
      // A `nexus run` started by the child asks here for a sub-lease (direct requests only).
      if (target === DELEGATE_PATH && req.url === DELEGATE_PATH) {
        await delegateFor(req, res, agent);
        return;
      }
      // MUST: the target is checked with the proxy's own routing rules on the raw
      // request line, before anything is signed. A valid service name and a path that
      // cannot escape it, or a problem: `/../v1/...`, `/%2e%2e/...` and the Authority's
      // prefixes (lease renewal, discovery: the sidecar's own business) never get signed.
      const route = parseRoute(target);
      const query = queryWithoutDummyKey(route.query);
      const path = route.rawPath + (query === '' ? '' : `?${query}`);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headersDistinct)) {
        if (v === undefined || DROP.has(k)) continue;
        const value = v.join(', ');
        // Base-URL mode: the SDK's placeholder key is dropped, never forwarded.
        if (holdsDummyKey(value)) continue;
        headers[k] = value;
      }
      // A WebSocket handshake: signed as a GET and tunnelled (sidecar-upgrade.ts).
      if (isUpgrade(req)) {
        const intentField = req.headers['nexus-intent'];
        await relayUpgrade(
          agent,
          req,
          res,
          {
            service: route.service,
            path,
            intent: typeof intentField === 'string' ? intentField : (options.intent ?? ''),
          },
          headers,
        );
        return;
      }
      // The node's own limit when it advertises one: a larger body is refused here.
      const body = await readAll(
        req,
        options.maxBodyBytes ?? agent.maxBodyBytes ?? 10 * 1024 * 1024,
      );
      // A per-request intent may be given by the child in `Nexus-Intent` as plain text;
      // an MCP message's comes from the message (docs/mcp.md), else the default.
      rpc = mcpMessage(req.headers['content-type'], body);
      const intentHeader = req.headers['nexus-intent'];
      const intent =
        typeof intentHeader === 'string'
          ? intentHeader
          : rpc !== undefined
            ? intentText(rpc.msg.intent ?? options.intent ?? defaultMcpIntent(rpc.msg))
            : (options.intent ?? '');
      const upstream = await agent.fetch(route.service, path, {
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
      if (err instanceof NexusAgentError && rpc?.id !== undefined) {
        // An MCP client gets the refusal of its request as a JSON-RPC error response.
        const refusal = mcpRefusal(rpc.id, err.code, err.detail ?? err.code, err.requestId ?? '');
        res.writeHead(200, { 'content-type': 'application/json', 'nexus-error': err.code });
        res.end(JSON.stringify(refusal));
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
  };

  const forward =
    options.forward === undefined ? undefined : createForwardProxy(options.forward, relay);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // Forward-proxy mode: an absolute-form target (`GET http://host/path`).
    if (forward !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(req.url ?? '')) {
      void forward.absolute(req, res);
      return;
    }
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
    void relay(req, res, req.url ?? '');
  };
  const server: Server = createServer(onRequest);
  // A WebSocket handshake takes the same way as a request (path or forward-proxy mode).
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    onRequest(req, adoptUpgrade(req, socket, head)),
  );
  if (forward !== undefined) server.on('connect', forward.connect);
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
        forward?.close();
      }),
  };
}
