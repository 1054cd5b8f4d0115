/** The sidecar's own refusals (path, base-URL and forward-proxy mode) as RFC 9457 problems. */
import type { ServerResponse } from 'node:http';

/** Answers a problem+json: a stable code and a fixed title, never a secret or raw input. */
export function problem(res: ServerResponse, status: number, code: string, title: string): void {
  const body = JSON.stringify({ type: `urn:nexus:problem:${code}`, title, status, code });
  res.writeHead(status, { 'content-type': 'application/problem+json', 'nexus-error': code });
  res.end(body);
}
