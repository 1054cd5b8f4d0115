/**
 * Answers requests that Node's HTTP parser refuses before any handler runs (oversized
 * header sections, malformed request lines, conflicting framing headers) with an RFC 9457
 * problem like every other refusal, then closes the connection. Nothing is forwarded.
 */
import type { Socket } from 'node:net';
import { NexusError, problemDetails } from '@nexus-proxy/protocol';
import { randomId } from '../util/ids.js';

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
