/**
 * Test helpers: a `MechanicContext` over an in-memory credential, and an `OutboundRequest`
 * builder. For unit tests of mechanics only.
 */
import { credentialUnavailable } from '../errors.js';
import type { MechanicContext, OutboundRequest, ResolvedCredential } from '../mechanic.js';

/** A context whose `credential()` returns `credential` (or fails when the name differs). */
export function fakeContext(
  credential: ResolvedCredential | undefined,
  options: { now?: number; service?: string; agent?: string; act?: string } = {},
): MechanicContext & { requested: Array<string | undefined> } {
  const requested: Array<string | undefined> = [];
  return {
    service: options.service ?? 'svc',
    agent: options.agent ?? 'nexus://test/agent/bot',
    act: options.act,
    now: options.now ?? Date.parse('2024-01-02T03:04:05.678Z'),
    lease: undefined,
    claims: undefined,
    requested,
    credential(name?: string): Promise<ResolvedCredential> {
      requested.push(name);
      if (credential === undefined || (name !== undefined && name !== credential.name)) {
        return Promise.reject(credentialUnavailable('credential not found'));
      }
      return Promise.resolve(credential);
    },
  };
}

/** An outbound request with lower-case headers and an optional UTF-8 or byte body. */
export function outbound(
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: string | Uint8Array | undefined } = {},
): OutboundRequest {
  const body =
    init.body === undefined
      ? undefined
      : typeof init.body === 'string'
        ? new TextEncoder().encode(init.body)
        : init.body;
  return { method, url: new URL(url), headers: { ...init.headers }, body };
}
