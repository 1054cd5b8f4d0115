/**
 * WebSocket upgrades through the proxy (issue 11). The handshake is a signed `GET` that goes
 * through the one pipeline like any request (route, lease and signature, replay, limits,
 * policy); only then is it handed here, where the service's opt-in is checked, the
 * mechanic injects the credential into the upstream handshake, the request record is
 * written, and the stream is relayed:
 *
 * - upstream to agent: every message (text, binary) and every close reason passes the
 *   redactor, with the same secrets as an HTTP response of that upstream;
 * - agent to upstream: messages relayed as they are, each bounded like a request body;
 * - pings are answered hop by hop (Nexus answers the upstream's pings and the agent's);
 *   a ping payload never crosses Nexus;
 * - the lease and the agent are checked again every {@link RECHECK_MS}: a revoked or expired
 *   lease, or a disabled agent, closes the stream (1008) within about that time.
 *
 * Framing is the `ws` package's, not ours: it reassembles fragmented messages and frames
 * split across TCP reads, so the redactor always sees a whole message (bounded by
 * `maxPayload`), and a secret cannot slip through a fragment or a segment boundary.
 * MUST: `permessage-deflate` is never negotiated on either side (`perMessageDeflate: false`
 * drops the agent's offer and sends none upstream; an upstream that answers with an
 * extension anyway fails the handshake), so the bytes the redactor reads are the bytes the
 * agent receives.
 * MUST: a secret cut in two by a message boundary (each half alone in its message, or the
 * second in the close reason) is not relayed whole: the stream closes (1011) before the
 * second half ({@link createBoundaryCheck}).
 * MUST: no upstream byte reaches the agent before the request record is durable, and none
 * unredacted. MUST NOT: relay the upstream's 101 head (only its chosen subprotocol).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ServerResponse as HttpServerResponse } from 'node:http';
import { isUtf8 } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { NexusError, isNexusError } from '@nexus-proxy/protocol';
import type { AppliedAuth, MechanicContext, OutboundRequest } from '../mechanics/mechanic.js';
import type { Logger } from '../util/logger.js';
import type { AuditRecord } from '../audit/record.js';
import type { Route } from './route.js';
import type { ServiceRuntime } from './pipeline.js';
import { errorSummary, upstreamFailure } from './pipeline.js';
import { forwardableRawHeaders } from './strip-headers.js';
import { createResponseScrubber, type ResponseScrubber } from './response.js';
import { rawSpanFor } from '../scrub/redactor.js';
import { relayRedacted } from './relay.js';
import { sendProblem } from './problem.js';

/** How often an open stream's lease and agent are checked again (ms). */
export const RECHECK_MS = 1000;
/** After Nexus sends a close frame, the peer has this long to answer before the cut (ms). */
const CLOSE_GRACE_MS = 2000;
/** Back-pressure: a side's reading pauses while the other has this much unsent (bytes). */
const HIGH_WATER = 1024 * 1024;

/** What the pipeline hands over once every check before forwarding passed. */
export interface UpgradeExchange {
  readonly req: IncomingMessage;
  /** Bound to the upgrade's socket: refusals and a refused upstream answer are written here. */
  readonly res: ServerResponse;
  readonly requestId: string;
  readonly service: ServiceRuntime;
  readonly route: Route;
  readonly context: MechanicContext;
  readonly minSecretLength: number;
  /** The bound of one message, each way (the node's `proxy.max_body`). */
  readonly maxMessageBytes: number;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Refuses as a denial (request record with `decision: deny` and the rule id). */
  deny(d: { rule: string; error: NexusError }): Promise<void>;
  /** Refuses before anything was sent upstream (request record with the error). */
  refuse(err: unknown): Promise<void>;
  /** Writes the request record; it MUST be durable before the handshake goes upstream. */
  recordRequest(credential: AppliedAuth['credential']): Promise<void>;
  recordOutcome(o: {
    upstreamStatus?: number;
    bytesIn: number;
    bytesOut: number;
    redactions: number;
    error?: NexusError;
    websocket?: AuditRecord['websocket'];
  }): void;
  /** The reason the stream must end now (a revoked or expired lease...), or undefined. */
  recheck(): NexusError | undefined;
}

/** The pipeline's hand-over for one upgrade request. */
export type UpgradeRelay = (x: UpgradeExchange) => Promise<void>;

/**
 * A response written on an upgrade request's raw socket (Node's `upgrade` event has none),
 * so the pipeline refuses an upgrade with the same problem+json as any request. The
 * connection closes after it.
 */
export function upgradeResponse(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new HttpServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as never);
  res.once('finish', () => socket.end());
  return res;
}

/** True when the request asks to switch to WebSocket (`Upgrade: websocket`, any case). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '')
    .toLowerCase()
    .split(',')
    .some((u) => u.trim() === 'websocket');
}

const KEY_RE = /^[A-Za-z0-9+/]{22}==$/;

/** What is wrong with the agent's handshake (RFC 6455 §4.2.1), or undefined. */
function handshakeProblem(req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return 'a WebSocket handshake must be a GET';
  if (!isWebSocketUpgrade(req)) return 'only "Upgrade: websocket" is relayed';
  if (!KEY_RE.test(req.headers['sec-websocket-key'] ?? ''))
    return 'Sec-WebSocket-Key is missing or invalid';
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version must be 13';
  return undefined;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * The close code to send on, or undefined when it is one an endpoint may not send (RFC 6455
 * §7.4: 1004-1006, 1015, unassigned): the side is then closed without a code.
 */
export function sendableCode(code: number | undefined): number | undefined {
  if (code === undefined) return undefined;
  if (code >= 3000 && code <= 4999) return code;
  if (code >= 1000 && code <= 1014 && ![1004, 1005, 1006].includes(code)) return code;
  return undefined;
}

/** A close reason within the frame's 123 bytes, cut at a character boundary. */
export function reasonText(text: string): string {
  let s = text;
  while (Buffer.byteLength(s) > 123) s = s.slice(0, -1);
  return s;
}

/** The relays of one listener; {@link WebSocketRelays.closeAll} ends them on shutdown. */
export interface WebSocketRelays {
  /** The pipeline's hand-over for the upgrade request that came with `socket` and `head`. */
  relay(socket: Duplex, head: Buffer): UpgradeRelay;
  /**
   * Ends every open stream (1001, Nexus going away); resolves once each has closed and
   * handed its outcome record to the audit log, or after the close grace.
   */
  closeAll(): Promise<void>;
}

export function createWebSocketRelays(): WebSocketRelays {
  const open = new Set<(code: number, reason: string) => void>();
  const running = new Set<Promise<void>>();
  return {
    relay: (socket, head) => (x) => {
      const p = relayUpgrade(x, socket, head, open);
      running.add(p);
      void p.finally(() => running.delete(p)).catch(() => undefined);
      return p;
    },
    async closeAll() {
      for (const stop of open) stop(1001, 'Nexus is stopping');
      // A handshake still in progress is not waited for past the close grace.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...running]),
        new Promise((r) => (timer = setTimeout(r, CLOSE_GRACE_MS + 500))),
      ]);
      clearTimeout(timer);
    },
  };
}

async function relayUpgrade(
  x: UpgradeExchange,
  socket: Duplex,
  head: Buffer,
  open: Set<(code: number, reason: string) => void>,
): Promise<void> {
  const { req, res, service } = x;
  if (service.websocket === undefined) {
    await x.deny({
      rule: 'service:websocket',
      error: new NexusError('policy_denied', undefined, {
        detail: `service "${service.name}" does not accept WebSocket upgrades (services.${service.name}.websocket)`,
      }),
    });
    return;
  }
  // An MCP endpoint's messages are read and filtered one by one over HTTP (mcp/gateway.ts);
  // a stream would pass them unread.
  const bad =
    service.kind === 'mcp'
      ? `service "${service.name}" is an MCP endpoint: WebSocket upgrades are not relayed to it`
      : handshakeProblem(req);
  if (bad !== undefined) {
    await x.refuse(new NexusError('request_invalid', undefined, { detail: bad }));
    return;
  }
  const protocols = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  const basePath = service.upstream.pathname.replace(/\/$/, '');
  const target = `${basePath}${x.route.rawPath}` || '/';
  const headers = forwardableRawHeaders(req.rawHeaders, service.mechanic.injectedHeaders);
  // The handshake fields are the relay's own on each side: the ws client makes its own key,
  // and no extension is ever offered upstream.
  for (const name of Object.keys(headers))
    if (name.startsWith('sec-websocket-')) delete headers[name];
  const out: OutboundRequest = {
    method: 'GET',
    url: new URL(`${service.upstream.origin}${target}${x.route.query ? `?${x.route.query}` : ''}`),
    headers,
    body: undefined,
  };
  let applied: AppliedAuth;
  try {
    applied = await service.mechanic.apply(out, x.context);
    // A mechanic with its own TLS client (mtls) has no WebSocket client here: fail closed.
    if (out.dispatcher !== undefined) {
      throw new NexusError('request_invalid', undefined, {
        detail: `service "${service.name}": WebSocket upgrades are not available with its auth mechanic`,
      });
    }
  } catch (err) {
    await x.refuse(err);
    return;
  }
  try {
    await x.recordRequest(applied.credential);
  } catch (err) {
    // Another worker took this signed request first (`--workers`): a replay, nothing relayed.
    if (isNexusError(err) && err.code === 'replay_detected') {
      await x.refuse(err);
      return;
    }
    x.logger.error({ request_id: x.requestId, err: errorSummary(err) }, 'audit write failed');
    sendProblem(res, new NexusError('audit_unavailable'), x.requestId, true);
    return;
  }

  const counts = { bytesIn: 0, bytesOut: 0, redactions: 0, messagesIn: 0, messagesOut: 0 };
  let upstreamStatus: number | undefined;
  let error: NexusError | undefined;
  let closedBy: 'agent' | 'upstream' | 'nexus' | undefined;
  let closeCode: number | undefined;
  const scrubberFor = (h: IncomingMessage['headers']) =>
    createResponseScrubber({
      headers: h,
      secrets: applied.secrets,
      origin: service.upstream.origin,
      removeHeaders: service.removeHeaders,
      minSecretLength: x.minSecretLength,
    });

  const url = new URL(out.url);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const upstream = new WebSocket(url, protocols, {
    headers: out.headers,
    perMessageDeflate: false,
    maxPayload: x.maxMessageBytes,
    handshakeTimeout: service.websocket.connectTimeoutMs + service.headersTimeoutMs,
    followRedirects: false,
    ...(service.websocket.ca === undefined ? {} : { ca: service.websocket.ca }),
  });
  // Until the agent's side is open (`side.agent`), the upstream's messages (and its close)
  // wait here; its reading is paused from the moment it opens (before any frame is read:
  // 'open' is emitted synchronously with the 101), so the wait is bounded.
  const side: { agent?: WebSocket } = {};
  const early: { data: RawData; binary: boolean }[] = [];
  let earlyClose: { code: number; reason: Buffer } | undefined;
  upstream.once('open', () => upstream.pause());
  upstream.on('message', (data, binary) => {
    if (side.agent === undefined) early.push({ data, binary });
    else onUpstreamMessage(side.agent, data, binary);
  });
  upstream.on('close', (code, reason) => {
    if (side.agent === undefined) earlyClose = { code, reason };
    else onUpstreamClose(side.agent, code, reason);
  });
  upstream.on('error', (err) => {
    if (side.agent !== undefined) onUpstreamError(side.agent, err);
  });
  // The agent may leave while the upstream is still answering.
  const agentLeft = () => upstream.terminate();
  socket.once('close', agentLeft);
  const answer = await new Promise<
    | { kind: 'open' }
    | { kind: 'response'; creq: { destroy(): void }; cres: IncomingMessage }
    | { kind: 'error'; err: unknown }
  >((resolve) => {
    upstream.once('open', () => resolve({ kind: 'open' }));
    upstream.once('unexpected-response', (creq, cres) => resolve({ kind: 'response', creq, cres }));
    upstream.once('error', (err) => resolve({ kind: 'error', err }));
  });
  socket.off('close', agentLeft);

  if (answer.kind !== 'open') {
    // No stream: the agent gets a problem, or the upstream's refusal scrubbed like any
    // HTTP response (a 401 or 404 of the upstream is its answer, not Nexus's).
    upstream.on('error', () => undefined);
    try {
      if (answer.kind === 'error') throw handshakeFailure(answer.err);
      const { cres } = answer;
      upstreamStatus = cres.statusCode ?? 0;
      if (upstreamStatus < 200 || upstreamStatus > 599) {
        throw new NexusError('upstream_invalid', undefined, {
          detail: `the upstream answered the WebSocket handshake with status ${upstreamStatus}`,
        });
      }
      const scrubber = scrubberFor(cres.headers);
      counts.redactions += scrubber.headerRedactions;
      res.writeHead(upstreamStatus, scrubber.headers);
      if (scrubber.coded) {
        const scrub = scrubber.stream();
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            counts.bytesOut += chunk.length;
            cb(null, chunk);
          },
        });
        try {
          await pipeline(cres, scrub, counter, res);
        } finally {
          counts.redactions += scrub.redactions;
        }
      } else {
        const redactor = scrubber.redactor();
        try {
          await relayRedacted(cres, redactor, res, (n) => (counts.bytesOut += n));
        } finally {
          counts.redactions += redactor.count;
        }
      }
    } catch (err) {
      error = isNexusError(err) ? err : upstreamFailure(err, 'body');
      if (!res.headersSent) sendProblem(res, error, x.requestId, true);
      else res.destroy();
    } finally {
      if (answer.kind === 'response') answer.creq.destroy();
      x.recordOutcome({ upstreamStatus, ...counts, error, websocket: {} });
    }
    return;
  }

  upstreamStatus = 101;
  const scrubber = scrubberFor({});
  // The upstream's last bytes, to find a secret split across two of its messages.
  const boundary = createBoundaryCheck(scrubber);
  const chosen = upstream.protocol;
  // The socket goes to the agent-side WebSocket: the refusal response lets go of it.
  res.statusCode = 101;
  res.detachSocket(socket as never);
  const server = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: x.maxMessageBytes,
    clientTracking: false,
    handleProtocols: () => (chosen === '' ? false : chosen),
  });
  const agent = await new Promise<WebSocket | undefined>((resolve) => {
    socket.once('close', () => resolve(undefined));
    server.handleUpgrade(req, socket as never, head, (ws) => resolve(ws));
  });
  if (agent === undefined) {
    upstream.terminate();
    x.recordOutcome({
      upstreamStatus,
      ...counts,
      error: new NexusError('agent_disconnected', undefined, {
        detail: 'the agent closed its connection before the WebSocket handshake completed',
      }),
      websocket: {},
    });
    return;
  }

  const toAgent = agent;
  let closed = 0;
  let done: () => void = () => undefined;
  const ended = new Promise<void>((r) => (done = r));
  const timers: NodeJS.Timeout[] = [];
  const closeSide = (ws: WebSocket, code: number | undefined, reason: string) => {
    if (ws.readyState === WebSocket.CLOSED) return;
    if (ws.readyState === WebSocket.OPEN) {
      const c = sendableCode(code);
      if (c === undefined) ws.close();
      else ws.close(c, reasonText(reason));
    }
    const t = setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
    t.unref();
    timers.push(t);
  };
  const stop = (to: WebSocket, code: number, reason: string, err?: NexusError) => {
    closedBy ??= 'nexus';
    closeCode ??= code;
    error ??= err;
    closeSide(to, code, reason);
    closeSide(upstream, code === 1008 ? 1000 : code, '');
  };
  const recheck = setInterval(() => {
    const err = x.recheck();
    if (err !== undefined) stop(toAgent, 1008, err.code, err);
  }, RECHECK_MS);
  const onStop = (code: number, reason: string) => stop(toAgent, code, reason);
  open.add(onStop);
  const finished = () => {
    if (++closed < 2) return;
    clearInterval(recheck);
    for (const t of timers) clearTimeout(t);
    open.delete(onStop);
    done();
  };

  // Back-pressure both ways: a side whose peer has too much unsent pauses reading.
  const forward = (from: WebSocket, to: WebSocket, data: Buffer, binary: boolean) => {
    to.send(data, { binary }, () => {
      if (from.isPaused && to.bufferedAmount < HIGH_WATER) from.resume();
    });
    if (to.bufferedAmount >= HIGH_WATER) from.pause();
  };

  function onUpstreamMessage(to: WebSocket, data: RawData, isBinary: boolean): void {
    if (to.readyState !== WebSocket.OPEN || closedBy !== undefined) return;
    const raw = toBuffer(data);
    // MUST: a secret cut in two by a message boundary is not relayed as two halves.
    if (boundary.crosses(raw)) {
      counts.redactions++;
      stop(to, 1011, 'upstream_invalid', splitSecret());
      return;
    }
    // MUST: a whole message through a fresh redactor; nothing of it is released before.
    const redactor = scrubber.redactor();
    const clean = Buffer.concat([redactor.push(raw), redactor.end()]);
    counts.redactions += redactor.count;
    if (!isBinary && !isUtf8(clean)) {
      stop(
        to,
        1011,
        'upstream_invalid',
        new NexusError('upstream_invalid', undefined, {
          detail: 'a redacted text message of the upstream is not valid UTF-8',
        }),
      );
      return;
    }
    counts.messagesOut++;
    counts.bytesOut += clean.length;
    forward(upstream, to, clean, isBinary);
  }
  function onUpstreamClose(to: WebSocket, code: number, reason: Buffer): void {
    if (closedBy === undefined) {
      closedBy = 'upstream';
      closeCode = code === 1005 || code === 1006 ? undefined : code;
      // MUST: the close reason passes the redactor too.
      const redactor = scrubber.redactor();
      const clean = Buffer.concat([redactor.push(reason), redactor.end()]);
      counts.redactions += redactor.count;
      // Nor the end of a secret whose start was the last message's end.
      const split = boundary.crosses(reason);
      if (split) {
        counts.redactions++;
        error ??= splitSecret();
      }
      closeSide(to, code === 1006 ? 1011 : code, split ? '' : clean.toString('utf8'));
    }
    finished();
  }
  function onUpstreamError(to: WebSocket, err: Error): void {
    // ws closes the socket after an error ('close' follows): a message over the bound,
    // invalid framing or UTF-8.
    if (closedBy !== undefined) return;
    closedBy = 'nexus';
    error = new NexusError('upstream_invalid', undefined, {
      detail: `the upstream's WebSocket stream was refused (${wsErrorCode(err)})`,
      cause: err,
    });
    closeSide(to, 1011, 'upstream_invalid');
  }

  toAgent.on('message', (data, isBinary) => {
    if (upstream.readyState !== WebSocket.OPEN || closedBy !== undefined) return;
    const raw = toBuffer(data);
    counts.messagesIn++;
    counts.bytesIn += raw.length;
    forward(toAgent, upstream, raw, isBinary);
  });
  toAgent.on('close', (code, reason) => {
    if (closedBy === undefined) {
      closedBy = 'agent';
      closeCode = code === 1005 || code === 1006 ? undefined : code;
      closeSide(upstream, code, reason.toString('utf8'));
    }
    finished();
  });
  toAgent.on('error', (err) => {
    if (closedBy !== undefined) return;
    closedBy = 'nexus';
    error = new NexusError('request_invalid', undefined, {
      detail: `the agent's WebSocket stream was refused (${wsErrorCode(err)})`,
      cause: err,
    });
    closeSide(upstream, 1000, '');
  });
  // What the upstream sent while the agent's side opened, in order, then its close.
  for (const m of early.splice(0)) onUpstreamMessage(toAgent, m.data, m.binary);
  side.agent = toAgent;
  if (earlyClose !== undefined) onUpstreamClose(toAgent, earlyClose.code, earlyClose.reason);
  else upstream.resume();
  await ended;
  x.recordOutcome({
    upstreamStatus,
    ...counts,
    error,
    websocket: {
      messages_in: counts.messagesIn,
      messages_out: counts.messagesOut,
      ...(closeCode === undefined ? {} : { close_code: closeCode }),
      ...(closedBy === undefined ? {} : { closed_by: closedBy }),
    },
  });
}

function splitSecret(): NexusError {
  return new NexusError('upstream_invalid', undefined, {
    detail: 'the upstream split a secret across two WebSocket messages',
  });
}

/**
 * Finds a secret cut in two by the boundary between two upstream messages (or a message
 * and the close reason). Each message passes a fresh redactor, which sees each half alone;
 * the agent would join them. The bytes around the boundary (the last `span` of what came
 * before, the first `span` of what comes now, `span` the widest raw form of the longest
 * secret) are redacted together: a region that starts before the boundary changes the
 * redacted tail. The cost per message is bounded by `span`, not by the message.
 */
export function createBoundaryCheck(
  scrubber: Pick<ResponseScrubber, 'redactor' | 'maxSecretLength'>,
): {
  crosses(next: Buffer): boolean;
} {
  const span = rawSpanFor(scrubber.maxSecretLength);
  let tail = Buffer.alloc(0);
  const redact = (b: Buffer) => {
    const r = scrubber.redactor();
    return Buffer.concat([r.push(b), r.end()]);
  };
  return {
    crosses(next) {
      let crossed = false;
      if (tail.length > 0 && next.length > 0) {
        const before = redact(tail);
        const around = redact(Buffer.concat([tail, next.subarray(0, span)]));
        crossed = !around.subarray(0, before.length).equals(before);
      }
      const joined =
        next.length >= span ? next.subarray(next.length - span) : Buffer.concat([tail, next]);
      tail = Buffer.from(joined.subarray(Math.max(0, joined.length - span)));
      return crossed;
    },
  };
}

/**
 * A failed upstream handshake: a network failure as for any request, else the `ws` client's
 * refusal of the answer (an extension or a subprotocol it did not offer, a wrong
 * `Sec-WebSocket-Accept`) or its handshake timeout.
 */
function handshakeFailure(err: unknown): NexusError {
  const failure = upstreamFailure(err, 'request');
  if (failure.code !== 'internal_error') return failure;
  // ws's handshake errors carry no code; their messages are its own fixed text.
  const message = err instanceof Error ? err.message : '';
  if (/handshake has timed out/i.test(message)) {
    return new NexusError('upstream_timeout', undefined, {
      detail: 'the upstream did not answer the WebSocket handshake in time',
      cause: err,
    });
  }
  return new NexusError('upstream_invalid', undefined, {
    detail:
      "the upstream's answer to the WebSocket handshake was refused (an extension or a subprotocol not offered, or a wrong Sec-WebSocket-Accept)",
    cause: err,
  });
}

/** The `ws` error code (a fixed vocabulary such as `WS_ERR_UNSUPPORTED_MESSAGE_LENGTH`). */
function wsErrorCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^WS_ERR_[A-Z0-9_]+$/.test(code) ? code : 'WS_ERR';
}
