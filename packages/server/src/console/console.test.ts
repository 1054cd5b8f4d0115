// The console's session table and admin allow-list, table-driven (issue 15).
import { describe, expect, it } from 'vitest';
import { consoleApiAllowed, redactAuditRecords } from './api.js';
import { ConsoleSessions, type SessionUser } from './sessions.js';
import { roleFor } from './oidc.js';
import { checkRole, routeRole, type Caller } from '../admin/callers.js';

const ADMIN: SessionUser = { type: 'operator_token', name: 'default', role: 'admin' };

describe('ConsoleSessions', () => {
  it('expires a session after its idle time and after its absolute time', () => {
    let now = 0;
    const s = new ConsoleSessions(() => now, { idleMs: 100, absoluteMs: 250 });
    const { id, session } = s.create('nxo_x', ADMIN);
    expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(id).not.toBe(session.csrf);
    now = 99;
    expect(s.get(id)).toBe(session);
    now = 198;
    expect(s.get(id)).toBe(session); // used at 99: still live
    now = 249;
    expect(s.get(id)).toBe(session);
    now = 250;
    expect(s.get(id)).toBeUndefined(); // absolute expiry, however active
    const b = s.create('nxo_y', ADMIN);
    now = 350;
    expect(s.get(b.id)).toBeUndefined(); // idle expiry
    expect(s.size).toBe(0);
  });

  it('forgets a deleted session, refuses unknown ids and keeps at most `max`', () => {
    const ended: string[] = [];
    const s = new ConsoleSessions(
      () => 0,
      { max: 2 },
      (x) => ended.push(x.bearer),
    );
    const a = s.create('nxo_a', ADMIN);
    const b = s.create('nxo_b', ADMIN);
    const c = s.create('nxo_c', ADMIN);
    expect(s.get(a.id)).toBeUndefined(); // the oldest went first
    expect(s.get(b.id)?.bearer).toBe('nxo_b');
    s.delete(b.id);
    expect(s.get(b.id)).toBeUndefined();
    expect(s.get(c.id)?.bearer).toBe('nxo_c');
    // Every ended session is reported once (its person token is revoked with it).
    expect(ended).toEqual(['nxo_a', 'nxo_b']);
    expect(s.get(undefined)).toBeUndefined();
    expect(s.get('')).toBeUndefined();
    expect(s.get('x'.repeat(1000))).toBeUndefined();
  });
});

describe('consoleApiAllowed', () => {
  it.each([
    ['GET', '/v1/agents', true],
    ['POST', '/v1/agents/bot/disable', true],
    ['POST', '/v1/agents/bot/enable', true],
    ['POST', '/v1/agents/bot/revoke-leases', true],
    ['POST', '/v1/leases/abc/revoke', true],
    ['POST', '/v1/leases/revoke-all', true],
    ['GET', '/v1/audit', true],
    ['POST', '/v1/policy/explain', true],
    ['POST', '/v1/connections/mail', true],
    ['DELETE', '/v1/connections/mail/alice', true],
    ['GET', '/v1/approvals', true],
    ['POST', '/v1/approvals/apr_1/approve', true],
    ['POST', '/v1/approvals/apr_1/deny', true],
    ['GET', '/v1/approvals/apr_1/approve', false],
    ['POST', '/v1/approvals/apr_1/forward', false],
    ['POST', '/v1/approvals/%2e%2e/approve', false],
    // Answers that hold a secret, or writes of one:
    ['POST', '/v1/agents/bot/enrollment-tokens', false],
    ['PUT', '/v1/credentials/github', false],
    ['POST', '/v1/credentials/github/rotate', false],
    ['DELETE', '/v1/credentials/github', false],
    ['POST', '/v1/vault/rotate-master-key', false],
    ['POST', '/v1/authority/rotate-key', false],
    ['POST', '/v1/config/reload', false],
    ['GET', '/v1/audit/export', false],
    ['POST', '/v1/agents', false],
    // Method mismatch, dot segments and encoded slashes:
    ['GET', '/v1/leases/revoke-all', false],
    ['POST', '/v1/leases/../revoke', false],
    ['POST', '/v1/leases/%2e%2E/revoke', false],
    ['POST', '/v1/agents/a%2fb/disable', false],
    ['POST', '/v1/agents/%E0%A4%A/disable', false],
  ])('%s %s -> %s', (method, path, allowed) => {
    expect(consoleApiAllowed(method, path)).toBe(allowed);
  });
});

describe('redactAuditRecords', () => {
  it('replaces the lease JWT with its claims and leaves the rest', () => {
    const claims = { sub: 'nexus://x/agent/bot', jti: 'j1', cnf: { jkt: 't' } };
    const jwt = `eyJhbGciOiJFUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
    const out = JSON.parse(
      redactAuditRecords(
        JSON.stringify({
          records: [
            { seq: 1, intent: 'i', signature: { input: 'in', value: 'v', lease: jwt } },
            { seq: 2, kind: 'authority' },
            { seq: 3, signature: { input: 'in', value: 'v', lease: 'not-a-jwt' } },
          ],
        }),
      ),
    ) as { records: Record<string, unknown>[] };
    expect(out.records[0]).toEqual({
      seq: 1,
      intent: 'i',
      signature: { input: 'in', value: 'v', lease_claims: claims },
    });
    expect(out.records[1]).toEqual({ seq: 2, kind: 'authority' });
    expect(out.records[2]?.['signature']).toEqual({ input: 'in', value: 'v', lease_claims: null });
  });
});

describe('console roles (issue 15)', () => {
  const roles = { viewer: ['staff'], operator: ['ops'], admin: ['root', 'admins'] };
  it.each([
    [['staff'], 'viewer'],
    [['staff', 'ops'], 'operator'],
    [['ops', 'admins'], 'admin'],
    ['root', 'admin'],
    [['other'], undefined],
    [undefined, undefined],
    [[1, { a: 'ops' }], undefined],
  ])('claim %j -> %s', (claim, role) => {
    expect(roleFor(claim, roles)).toBe(role);
  });

  const as = (role: Caller['role']): Caller => ({ type: 'person', id: 's', name: 'n', role });
  it.each([
    ['GET', '/v1/agents', 'viewer'],
    ['GET', '/v1/audit', 'viewer'],
    ['POST', '/v1/policy/explain', 'viewer'],
    ['POST', '/v1/leases/abc/revoke', 'operator'],
    ['POST', '/v1/leases/revoke-all', 'operator'],
    ['POST', '/v1/agents/bot/disable', 'operator'],
    ['POST', '/v1/approvals/x/approve', 'operator'],
    ['POST', '/v1/approvals/x/deny', 'operator'],
    ['PUT', '/v1/credentials/gh', 'admin'],
    ['POST', '/v1/agents/bot/enrollment-tokens', 'admin'],
    ['POST', '/v1/config/reload', 'admin'],
    ['POST', '/v1/services', 'admin'],
    ['GET', '/v1/presets', 'viewer'],
    ['GET', '/v1/limits', 'viewer'],
    ['POST', '/v1/some/future/route', 'admin'],
    ['DELETE', '/v1/anything', 'admin'],
  ])('%s %s needs %s', (method, path, need) => {
    expect(routeRole(method, path).role).toBe(need);
    const order = ['viewer', 'operator', 'admin'] as const;
    for (const have of order) {
      const allowed = order.indexOf(have) >= order.indexOf(need as (typeof order)[number]);
      let code: string | undefined;
      try {
        checkRole(as(have), method, path);
      } catch (e) {
        code = (e as { code?: string }).code;
      }
      expect(code).toBe(allowed ? undefined : 'role_forbidden');
    }
  });
});
