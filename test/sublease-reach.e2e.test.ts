/**
 * Review of issue 16 (spec §12.5, §12.6): a sub-lease narrowed by service or intent learns
 * and reaches no more than its grant through the agent routes of the Authority either.
 * `GET /v1/agent/services` lists only the delegated services (it listed every service the
 * agent's policy allows), and `POST /v1/agent/passthrough` refuses a service-narrowed
 * sub-lease (a blind tunnel belongs to no service, so it would widen the grant) and one
 * whose intent patterns do not match; the refusal is audited like any passthrough decision.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf } from './helpers/agents.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let node: TestNode;
let upstream: TestUpstream;

beforeAll(async () => {
  upstream = await startUpstream();
  node = await startNode({
    services: {
      alpha: { upstream: upstream.url, auth: { type: 'none' } },
      beta: { upstream: upstream.url, auth: { type: 'none' } },
      gamma: { upstream: upstream.url, auth: { type: 'none' } },
    },
    agents: { bot: { roles: ['dev'] } },
    policies: [{ id: 'dev', allow: { roles: ['dev'], services: ['alpha', 'beta', 'gamma'] } }],
    overrides: {
      passthrough: [{ id: 'pkg', hosts: ['pkg.example'], roles: ['dev'], ports: [443] }],
    },
  });
}, 60_000);

afterAll(async () => {
  await node?.stop();
  await upstream?.close();
});

const names = (list: Array<{ name: string }>): string[] => list.map((s) => s.name);

describe('a sub-lease on the agent routes (spec §12.5)', () => {
  it('GET /v1/agent/services lists only the delegated services', async () => {
    const parent = await node.enroll('bot');
    expect(names(await parent.services())).toEqual(['alpha', 'beta', 'gamma']);
    const child = await parent.delegate({ services: ['beta', 'beta', 'alpha'] });
    expect(names(await child.services())).toEqual(['alpha', 'beta']);
    const grandchild = await child.delegate({ services: ['beta'] });
    expect(names(await grandchild.services())).toEqual(['beta']);
    // Narrowed by intent only: every service is still open to it.
    const byIntent = await parent.delegate({ intentPattern: 'triage *' });
    expect(byIntent.claims).not.toHaveProperty('nexus_services');
    for (const a of [parent, child, grandchild, byIntent]) a.close();
  });

  it('POST /v1/agent/passthrough refuses a service- or intent-narrowed sub-lease, audited', async () => {
    const parent = await node.enroll('bot');
    expect(await parent.passthrough('pkg.example', 443)).toBe('pkg');
    const byService = await parent.delegate({ services: ['alpha'] });
    expect(await codeOf(byService.passthrough('pkg.example', 443))).toBe('service_not_delegated');
    const byIntent = await parent.delegate({ intentPattern: 'triage *' });
    expect(await codeOf(byIntent.passthrough('pkg.example', 443))).toBe('intent_not_delegated');
    // A pattern the tunnel's intent matches, no service narrowing: the rules decide.
    const wide = await parent.delegate({ intentPattern: 'passthrough tunnel to pkg.example:*' });
    expect(await wide.passthrough('pkg.example', 443)).toBe('pkg');
    type Row = { kind: string; lease_id?: string; decision: string; error_code?: string };
    const audit = await node.admin<{ records: Row[] }>('GET', '/v1/audit?limit=1000');
    const rows = audit.body.records.filter((r) => r.kind === 'passthrough');
    const of = (lease: string) => rows.filter((r) => r.lease_id === lease);
    expect(of(byService.claims.jti)).toEqual([
      expect.objectContaining({ decision: 'deny', error_code: 'service_not_delegated' }),
    ]);
    expect(of(byIntent.claims.jti)).toEqual([
      expect.objectContaining({ decision: 'deny', error_code: 'intent_not_delegated' }),
    ]);
    expect(of(wide.claims.jti)).toEqual([expect.objectContaining({ decision: 'allow' })]);
    for (const a of [parent, byService, byIntent, wide]) a.close();
  });
});
