/**
 * Answers requests that Node's HTTP parser refuses before any handler runs (oversized
 * header sections, malformed request lines, conflicting framing headers) with an RFC 9457
 * problem like every other refusal, then closes the connection. Nothing is forwarded.
 * An HTTP/1.1 request without a `Host` field is one too (RFC 9112 §3.2: answered 400):
 * Node's own check answers it with a bare 400, so the servers turn that check off
 * (`requireHostHeader: false`) and refuse such a request with {@link lacksHost}.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { NexusError, problemDetails } from '@nexus-proxy/protocol';
import { randomId } from '../util/ids.js';
import { sendProblem } from './problem.js';

export function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
    socket.destroy();
    return;
  }
  const code =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? 'headers_too_large'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT'
        ? 'request_timeout'
        : 'request_invalid';
  const problem = new NexusError(code);
  const requestId = randomId(12);
  const body = JSON.stringify(problemDetails(problem, requestId));
  socket.end(
    `HTTP/1.1 ${problem.status} ${problem.status === 431 ? 'Request Header Fields Too Large' : problem.status === 408 ? 'Request Timeout' : 'Bad Request'}\r\n` +
      'content-type: application/problem+json\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      `nexus-request-id: ${requestId}\r\n` +
      `nexus-error: ${problem.code}\r\n` +
      'connection: close\r\n\r\n' +
      body,
  );
}

/**
 * True for an HTTP/1.1 (or later) request without a `Host` field, which a server MUST
 * refuse with 400 (RFC 9112 §3.2); `request_invalid`, before routing (spec §7.1, §8 step 2).
 * An empty `Host` (no authority) is allowed, as by Node; HTTP/1.0 has no such rule.
 */
export function lacksHost(req: IncomingMessage): boolean {
  return (
    req.headers.host === undefined &&
    (req.httpVersionMajor > 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1))
  );
}

/** Answers a request {@link lacksHost} refused: `400 request_invalid`, connection closed. */
export function refuseNoHost(res: ServerResponse): void {
  sendProblem(res, new NexusError('request_invalid', 'no Host header'), randomId(12), true);
}
