/**
 * Writes an RFC 9457 problem response. The body holds the stable code, the status, the
 * safe detail (`safeDetail`: text chosen by Nexus and configuration names) and the request
 * id: never a secret or raw request input. A 401 carries a `WWW-Authenticate` challenge.
 * `Nexus-Error` marks it as Nexus's own; the
 * proxy removes that name from every upstream response (`response.ts`), so a client can
 * trust it.
 */
import type { ServerResponse } from 'node:http';
import { problemDetails, type NexusError } from '@nexus-proxy/protocol';
import { signProblemHeaders } from './sign-response.js';

/**
 * @param closeConnection set when the request body was not read: the connection cannot
 *   be reused safely, so it is closed after the response.
 */
export function sendProblem(
  res: ServerResponse,
  err: NexusError,
  requestId: string,
  closeConnection: boolean,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(problemDetails(err, requestId));
  sendRefusal(res, err, requestId, closeConnection, 'application/problem+json', body);
}

/**
 * Writes a refusal by Nexus with `body` of `contentType` (a problem, or the JSON-RPC error
 * an MCP client reads): `Nexus-Error`, `Nexus-Request-Id`, the signature bound to the
 * request's nonce (spec §10.4) and, on a 401, the challenge. Every answer Nexus makes
 * itself goes through here, so none of them goes out unsigned.
 */
export function sendRefusal(
  res: ServerResponse,
  err: NexusError,
  requestId: string,
  closeConnection: boolean,
  contentType: string,
  body: string,
): void {
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'nexus-request-id': requestId,
    // Marks the response as Nexus's own, so a client never confuses it with an upstream's.
    'nexus-error': err.code,
  };
  // Signed by the Authority key, bound to the request's nonce (spec §10.4).
  signProblemHeaders(res.req, err.status, headers, body);
  const challenge = authenticateChallenge(err);
  if (challenge !== undefined) headers['www-authenticate'] = challenge;
  if (closeConnection) headers.connection = 'close';
  res.writeHead(err.status, headers);
  res.end(body);
}

/**
 * The `WWW-Authenticate` challenge a 401 MUST carry (RFC 9110 §15.5.2, spec §10.3): the
 * `Nexus` scheme with the code as `error` for the wire protocol (a lease and a signature,
 * never an `Authorization` header), `Bearer` for the admin API's operator token.
 */
export function authenticateChallenge(err: NexusError): string | undefined {
  if (err.status !== 401) return undefined;
  if (err.code === 'unauthorized') return 'Bearer realm="nexus-admin"';
  return `Nexus error="${err.code}"`;
}
