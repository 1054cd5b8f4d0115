/**
 * Agents for end-to-end tests: a raw agent whose key the test holds (to craft requests
 * the SDK would never send), and the error code of a rejected call.
 */
import { expect } from 'vitest';
import { generateAgentKey, type CryptoKey } from '@nexus-proxy/protocol';
import type { TestNode } from './node.js';

export interface RawAgent {
  lease: string;
  key: CryptoKey;
}

/** Enrolls `agent` with a fresh Ed25519 key the test keeps. */
export async function rawAgent(node: TestNode, agent: string): Promise<RawAgent> {
  const token = await node.enrollmentToken(agent);
  const { privateKey, publicJwk } = await generateAgentKey('ed25519');
  const res = await fetch(`${node.proxyUrl}/v1/leases`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollment_token: token, jwk: publicJwk }),
  });
  expect(res.status).toBe(201);
  return { lease: ((await res.json()) as { lease: string }).lease, key: privateKey };
}

/** The `code` of the error a promise rejects with, or undefined when it resolves. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}
