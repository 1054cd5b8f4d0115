/**
 * WebSocket upgrades through the `nexus run` sidecar (issue 11): the child's handshake, in
 * path mode (`ws://127.0.0.1:port/{service}/...`) or forward-proxy mode (absolute-form
 * `ws://` over HTTP_PROXY, `wss://` inside an intercepted CONNECT), is signed with the
 * lease like any request and sent to the proxy, which decides, audits, injects and relays
 * the stream with redaction (server/src/proxy/websocket.ts). Once the proxy answers 101
 * the sidecar only copies bytes both ways: every frame the child receives was already
 * redacted by the proxy, and the proxy's handshake answer (`Sec-WebSocket-Accept` for the
 * child's own key) is passed on as it is.
 *
 * MUST: `Sec-WebSocket-Extensions` is never passed on (no compression: the proxy scans
 * every frame). MUST: a refusal by the proxy reaches the child as the proxy's problem.
 */
import { request as httpRequest, ServerResponse } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { NexusAgent } from '@nexus-proxy/sdk';

interface PendingUpgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
}

const pending = new WeakMap<IncomingMessage, PendingUpgrade>();

/**
 * A response bound to an upgrade request's raw socket, so the sidecar answers an upgrade
 * it refuses with the same problem+json as any request; remembers the socket for
 * {@link relayUpgrade}. The connection closes after a refusal.
 */
export function adoptUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): ServerResponse {
  socket.on('error', () => socket.destroy());
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as never);
  res.once('finish', () => socket.end());
  // Another protocol (`Upgrade: h2c`...) goes on as a plain request.
  if (/(^|,)\s*websocket\s*(,|$)/i.test(req.headers.upgrade ?? '')) {
    pending.set(req, { socket, head });
  }
  return res;
}

/** True when `req` came with an `upgrade` event ({@link adoptUpgrade}). */
export function isUpgrade(req: IncomingMessage): boolean {
  return pending.has(req);
}

/** Handshake fields the child sends that the proxy needs (everything else is signed as is). */
const HANDSHAKE = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol'];

/**
 * Signs the child's handshake for `service` at `path` and tunnels the stream to the proxy.
 * `headers` are the child's end-to-end fields (the sidecar's DROP list applied).
 */
export async function relayUpgrade(
  agent: NexusAgent,
  req: IncomingMessage,
  res: ServerResponse,
  target: { service: string; path: string; intent: string },
  headers: Record<string, string>,
): Promise<void> {
  const up = pending.get(req);
  if (up === undefined) throw new Error('not an upgrade request');
  const childSocket = up.socket;
  const passed: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (!k.startsWith('sec-websocket-')) passed[k] = v;
  }
  const signed = await agent.signedRequest(target.service, target.path, {
    method: 'GET',
    headers: passed,
    intent: target.intent,
  });
  const handshake: Record<string, string> = {};
  for (const name of HANDSHAKE) {
    const v = req.headers[name];
    if (typeof v === 'string') handshake[name] = v;
  }
  await new Promise<void>((resolve) => {
    const out = httpRequest(signed.url, {
      method: 'GET',
      headers: { ...signed.headers, ...handshake, connection: 'Upgrade', upgrade: 'websocket' },
    });
    childSocket.once('close', () => out.destroy());
    out.once('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, {
          'content-type': 'application/problem+json',
          'nexus-error': 'proxy_unreachable',
        });
        res.end(
          JSON.stringify({
            type: 'urn:nexus:problem:proxy_unreachable',
            title: 'the sidecar could not reach the Nexus proxy',
            status: 502,
            code: 'proxy_unreachable',
          }),
        );
      } else childSocket.destroy();
      resolve();
    });
    // Refused (by Nexus or the upstream): the answer as it is, then the connection closes.
    out.once('response', (answer) => {
      const h: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(answer.headers)) {
        if (v !== undefined && !['connection', 'keep-alive', 'transfer-encoding'].includes(k))
          h[k] = v;
      }
      res.writeHead(answer.statusCode ?? 502, h);
      answer.pipe(res);
      answer.once('end', () => resolve());
      answer.once('error', () => {
        childSocket.destroy();
        resolve();
      });
    });
    out.once('upgrade', (answer, proxySocket, proxyHead) => {
      // The socket now carries the stream: the response object lets go of it.
      res.detachSocket(childSocket as never);
      const lines = [`HTTP/1.1 101 Switching Protocols`];
      const raw = answer.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        if ((raw[i] ?? '').toLowerCase() === 'sec-websocket-extensions') continue;
        lines.push(`${raw[i]}: ${raw[i + 1]}`);
      }
      childSocket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (proxyHead.length > 0) childSocket.write(proxyHead);
      if (up.head.length > 0) proxySocket.write(up.head);
      proxySocket.on('error', () => childSocket.destroy());
      proxySocket.pipe(childSocket);
      childSocket.pipe(proxySocket);
      const done = () => {
        proxySocket.destroy();
        childSocket.destroy();
        resolve();
      };
      proxySocket.once('close', done);
      childSocket.once('close', done);
    });
    out.end();
  });
}
