// The shared conformance suite of the `Store` interface: the executable contract every
// backend (SQLite today, PostgreSQL later) runs. Backend test files call
// `runStoreConformance` with a factory that returns a fresh, empty, migrated store.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditAppend, LeaseInsert, Store } from './store.js';

const T0 = 1_700_000_000_000;
const HOUR = 3_600_000;

/** Rejects with an error whose `code` is `code`. */
async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code });
}

const jwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };

function lease(
  jti: string,
  agent: string,
  issuedAt: number,
  extra: Partial<LeaseInsert> = {},
): LeaseInsert {
  return {
    jti,
    agent,
    publicJwk: jwk,
    jkt: `jkt-${jti}`,
    issuedAt,
    expiresAt: issuedAt + 15 * 60_000,
    chainStartedAt: issuedAt,
    ...extra,
  };
}

let hashCounter = 0;

/** Builds a linked chain of audit rows following `prev`. */
function chain(
  prev: string,
  records: { time?: number; record?: Record<string, unknown>; kind?: string; requestId?: string }[],
): AuditAppend[] {
  let prevHash = prev;
  return records.map((r, i) => {
    hashCounter += 1;
    const hash = `hash-${hashCounter}`;
    const row: AuditAppend = {
      time: r.time ?? T0,
      kind: r.kind ?? 'request',
      requestId: r.requestId ?? `req-${i}`,
      record: JSON.stringify(r.record ?? {}),
      prevHash,
      hash,
    };
    prevHash = hash;
    return row;
  });
}

/**
 * Registers the conformance suite for one backend.
 *
 * @param name backend name shown in the test report.
 * @param factory returns a fresh, empty, migrated store (called before every test).
 * @param teardown releases it (called after every test; the store may be closed already).
 * @example
 * runStoreConformance('sqlite', async () => openSqliteStore(tmpFile()), (s) => s.close());
 */
export function runStoreConformance(
  name: string,
  factory: () => Promise<Store>,
  teardown: (store: Store) => Promise<void>,
): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await factory();
    });

    afterEach(async () => {
      await teardown(store);
    });

    describe('agents', () => {
      it('upserts, gets and lists by name', async () => {
        const created = await store.upsertAgent({
          name: 'triage-bot',
          roles: ['triage'],
          source: 'config',
          createdAt: T0,
        });
        expect(created).toEqual({
          name: 'triage-bot',
          roles: ['triage'],
          disabled: false,
          source: 'config',
          createdAt: T0,
        });
        await store.upsertAgent({ name: 'alpha', roles: [], source: 'api', createdAt: T0 + 1 });
        expect(await store.getAgent('triage-bot')).toEqual(created);
        expect(await store.getAgent('nobody')).toBeUndefined();
        expect((await store.listAgents()).map((a) => a.name)).toEqual(['alpha', 'triage-bot']);
      });

      it('updates roles and source, keeps createdAt and the disabled flag unless given', async () => {
        await store.upsertAgent({ name: 'a', roles: ['x'], source: 'api', createdAt: T0 });
        await store.setAgentDisabled('a', true);
        const updated = await store.upsertAgent({
          name: 'a',
          roles: ['y', 'z'],
          source: 'config',
          createdAt: T0 + 5,
        });
        expect(updated).toEqual({
          name: 'a',
          roles: ['y', 'z'],
          disabled: true,
          source: 'config',
          createdAt: T0,
        });
        const enabled = await store.upsertAgent({
          name: 'a',
          roles: ['y'],
          source: 'config',
          disabled: false,
          createdAt: T0,
        });
        expect(enabled.disabled).toBe(false);
      });

      it('sets disabled; unknown agent -> not_found', async () => {
        await store.upsertAgent({ name: 'a', roles: [], source: 'api', createdAt: T0 });
        expect((await store.setAgentDisabled('a', true)).disabled).toBe(true);
        expect((await store.getAgent('a'))?.disabled).toBe(true);
        expect((await store.setAgentDisabled('a', false)).disabled).toBe(false);
        await expectCode(store.setAgentDisabled('nobody', true), 'not_found');
      });

      it('deletes api agents only, dropping tokens and revoking leases', async () => {
        await store.upsertAgent({ name: 'api-bot', roles: [], source: 'api', createdAt: T0 });
        await store.upsertAgent({ name: 'cfg-bot', roles: [], source: 'config', createdAt: T0 });
        await store.createEnrollmentToken({
          id: 't1',
          agent: 'api-bot',
          tokenHash: 'h1',
          expiresAt: T0 + HOUR,
          createdAt: T0,
        });
        await store.insertLease(lease('l1', 'api-bot', T0));
        await store.insertLease(lease('l2', 'api-bot', T0));
        await store.revokeLease('l2', T0 + 1);

        await expectCode(store.deleteAgent('cfg-bot', T0 + 10), 'conflict');
        await expectCode(store.deleteAgent('nobody', T0 + 10), 'not_found');
        await store.deleteAgent('api-bot', T0 + 10);

        expect(await store.getAgent('api-bot')).toBeUndefined();
        expect(await store.getAgent('cfg-bot')).toBeDefined();
        expect(await store.consumeEnrollmentToken('h1', T0 + 20)).toBeUndefined();
        expect((await store.getLease('l1'))?.revokedAt).toBe(T0 + 10);
        expect((await store.getLease('l2'))?.revokedAt).toBe(T0 + 1);
      });
    });

    describe('enrollment tokens', () => {
      beforeEach(async () => {
        await store.upsertAgent({ name: 'bot', roles: [], source: 'api', createdAt: T0 });
      });

      it('is consumed once, returning the row with usedAt', async () => {
        await store.createEnrollmentToken({
          id: 'e1',
          agent: 'bot',
          tokenHash: 'hash-1',
          act: 'user:alice',
          task: 'TASK-7',
          expiresAt: T0 + HOUR,
          createdAt: T0,
        });
        const row = await store.consumeEnrollmentToken('hash-1', T0 + 5);
        expect(row).toEqual({
          id: 'e1',
          agent: 'bot',
          tokenHash: 'hash-1',
          act: 'user:alice',
          task: 'TASK-7',
          expiresAt: T0 + HOUR,
          usedAt: T0 + 5,
          createdAt: T0,
        });
        expect(await store.consumeEnrollmentToken('hash-1', T0 + 6)).toBeUndefined();
      });

      it('leaves act and task undefined when absent', async () => {
        await store.createEnrollmentToken({
          id: 'e1',
          agent: 'bot',
          tokenHash: 'h',
          expiresAt: T0 + HOUR,
          createdAt: T0,
        });
        const row = await store.consumeEnrollmentToken('h', T0);
        expect(row?.act).toBeUndefined();
        expect(row?.task).toBeUndefined();
      });

      it('refuses unknown and expired tokens', async () => {
        await store.createEnrollmentToken({
          id: 'e1',
          agent: 'bot',
          tokenHash: 'h',
          expiresAt: T0 + 100,
          createdAt: T0,
        });
        expect(await store.consumeEnrollmentToken('other', T0)).toBeUndefined();
        expect(await store.consumeEnrollmentToken('h', T0 + 100)).toBeUndefined();
        expect(await store.consumeEnrollmentToken('h', T0 + 99)).toBeDefined();
      });

      it('is single use under concurrent consume', async () => {
        await store.createEnrollmentToken({
          id: 'e1',
          agent: 'bot',
          tokenHash: 'race',
          expiresAt: T0 + HOUR,
          createdAt: T0,
        });
        const results = await Promise.all(
          Array.from({ length: 25 }, (_, i) => store.consumeEnrollmentToken('race', T0 + i)),
        );
        expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      });

      it('disabling the agent voids its unused tokens, and a disabled agent gets none (issue 10)', async () => {
        await store.upsertAgent({ name: 'other', roles: [], source: 'api', createdAt: T0 });
        const base = { expiresAt: T0 + HOUR, createdAt: T0 };
        await store.createEnrollmentToken({ id: 'e1', agent: 'bot', tokenHash: 'used', ...base });
        await store.createEnrollmentToken({ id: 'e2', agent: 'bot', tokenHash: 'open', ...base });
        await store.createEnrollmentToken({ id: 'e3', agent: 'other', tokenHash: 'kept', ...base });
        expect(await store.consumeEnrollmentToken('used', T0 + 1)).toBeDefined();

        await store.setAgentDisabled('bot', true);
        await expectCode(
          store.createEnrollmentToken({ id: 'e4', agent: 'bot', tokenHash: 'late', ...base }),
          'agent_disabled',
        );
        await store.setAgentDisabled('bot', false);
        expect(await store.consumeEnrollmentToken('open', T0 + 2)).toBeUndefined();
        expect(await store.consumeEnrollmentToken('late', T0 + 2)).toBeUndefined();
        // Another agent's token, and a token made after the enable, work.
        expect(await store.consumeEnrollmentToken('kept', T0 + 2)).toBeDefined();
        await store.createEnrollmentToken({ id: 'e5', agent: 'bot', tokenHash: 'new', ...base });
        expect(await store.consumeEnrollmentToken('new', T0 + 3)).toBeDefined();
      });

      it('rejects duplicate ids and hashes, and unknown agents', async () => {
        const base = { agent: 'bot', expiresAt: T0 + HOUR, createdAt: T0 };
        await store.createEnrollmentToken({ id: 'e1', tokenHash: 'h1', ...base });
        await expectCode(
          store.createEnrollmentToken({ id: 'e1', tokenHash: 'h2', ...base }),
          'conflict',
        );
        await expectCode(
          store.createEnrollmentToken({ id: 'e2', tokenHash: 'h1', ...base }),
          'conflict',
        );
        await expectCode(
          store.createEnrollmentToken({ ...base, id: 'e3', tokenHash: 'h3', agent: 'ghost' }),
          'not_found',
        );
      });
    });

    describe('leases', () => {
      beforeEach(async () => {
        await store.upsertAgent({ name: 'a', roles: [], source: 'api', createdAt: T0 });
        await store.upsertAgent({ name: 'b', roles: [], source: 'api', createdAt: T0 });
      });

      it('round-trips every field', async () => {
        const full = lease('j1', 'a', T0, {
          parentJti: 'j0',
          act: 'user:alice',
          task: 'T-1',
          chainStartedAt: T0 - 1000,
          delegation: ['root', 'mid'],
        });
        await store.insertLease(full);
        expect(await store.getLease('j1')).toEqual(full);
        await store.insertLease(lease('j2', 'a', T0));
        const minimal = await store.getLease('j2');
        expect(minimal?.parentJti).toBeUndefined();
        expect(minimal?.revokedAt).toBeUndefined();
        expect(minimal?.delegation).toBeUndefined();
        expect(minimal?.publicJwk).toEqual(jwk);
        expect(await store.getLease('nope')).toBeUndefined();
      });

      it('rejects a duplicate jti and an unknown agent', async () => {
        await store.insertLease(lease('j1', 'a', T0));
        await expectCode(store.insertLease(lease('j1', 'a', T0)), 'conflict');
        await expectCode(store.insertLease(lease('j2', 'ghost', T0)), 'not_found');
      });

      it('lists newest first, by agent, with a limit', async () => {
        await store.insertLease(lease('j1', 'a', T0));
        await store.insertLease(lease('j2', 'b', T0 + 1));
        await store.insertLease(lease('j3', 'a', T0 + 2));
        expect((await store.listLeases()).map((l) => l.jti)).toEqual(['j3', 'j2', 'j1']);
        expect((await store.listLeases({ agent: 'a' })).map((l) => l.jti)).toEqual(['j3', 'j1']);
        expect((await store.listLeases({ limit: 2 })).map((l) => l.jti)).toEqual(['j3', 'j2']);
      });

      it('revokes by jti idempotently; unknown -> not_found', async () => {
        await store.insertLease(lease('j1', 'a', T0));
        expect((await store.revokeLease('j1', T0 + 10)).revokedAt).toBe(T0 + 10);
        expect((await store.revokeLease('j1', T0 + 20)).revokedAt).toBe(T0 + 10);
        expect((await store.getLease('j1'))?.revokedAt).toBe(T0 + 10);
        await expectCode(store.revokeLease('nope', T0), 'not_found');
      });

      it('revokes a lease with its whole renewal chain, and nothing else', async () => {
        // j1 -> j2 -> j3 and j2 -> j4 (two renewals raced); j5 -> j6 another chain of the
        // same agent; b1 -> b2 another agent's, with a parent id pointing into a's chain.
        await store.insertLease(lease('j1', 'a', T0));
        await store.insertLease(lease('j2', 'a', T0 + 1, { parentJti: 'j1' }));
        await store.insertLease(lease('j3', 'a', T0 + 2, { parentJti: 'j2' }));
        await store.insertLease(lease('j4', 'a', T0 + 3, { parentJti: 'j2' }));
        await store.insertLease(lease('j5', 'a', T0 + 4));
        await store.insertLease(lease('j6', 'a', T0 + 5, { parentJti: 'j5' }));
        await store.insertLease(lease('b1', 'b', T0 + 6, { parentJti: 'j3' }));
        await store.insertLease(lease('b2', 'b', T0 + 7, { parentJti: 'b1' }));
        await store.revokeLease('j3', T0 + 5);
        // From the newest lease: its parents too, and their other renewal.
        expect(await store.revokeLeaseChain('j4', T0 + 10)).toEqual(['j1', 'j2', 'j3', 'j4']);
        for (const jti of ['j1', 'j2', 'j4']) {
          expect((await store.getLease(jti))?.revokedAt).toBe(T0 + 10);
        }
        expect((await store.getLease('j3'))?.revokedAt).toBe(T0 + 5);
        for (const jti of ['j5', 'j6', 'b1', 'b2']) {
          expect((await store.getLease(jti))?.revokedAt).toBeUndefined();
        }
        expect(await store.revokeLeaseChain('j2', T0 + 20)).toEqual(['j1', 'j2', 'j3', 'j4']);
        expect((await store.getLease('j1'))?.revokedAt).toBe(T0 + 10);
        expect(await store.revokeLeaseChain('b2', T0 + 30)).toEqual(['b1', 'b2']);
        await expectCode(store.revokeLeaseChain('nope', T0), 'not_found');
      });

      it('ends on a corrupt parent cycle', async () => {
        await store.insertLease(lease('c1', 'a', T0, { parentJti: 'c2' }));
        await store.insertLease(lease('c2', 'a', T0 + 1, { parentJti: 'c1' }));
        await store.insertLease(lease('c3', 'a', T0 + 2, { parentJti: 'c2' }));
        expect(await store.revokeLeaseChain('c3', T0 + 10)).toEqual(['c1', 'c2', 'c3']);
      });

      it('lists every revoked lease that expires after a time', async () => {
        await store.insertLease(lease('old', 'a', T0 - 60 * 60_000)); // expired at T0 - 45 min
        await store.insertLease(lease('live', 'a', T0));
        await store.insertLease(lease('kept', 'a', T0 + 1));
        for (let i = 0; i < 30; i++) await store.insertLease(lease(`n${i}`, 'a', T0 + 2 + i));
        await store.revokeLease('old', T0);
        await store.revokeLease('live', T0);
        await store.revokeLease('n29', T0 + 40);
        expect((await store.listRevokedLeaseIds(T0)).sort()).toEqual(['live', 'n29']);
        expect((await store.listRevokedLeaseIds(T0 - 24 * 60 * 60_000)).sort()).toEqual([
          'live',
          'n29',
          'old',
        ]);
        expect(await store.listRevokedLeaseIds(T0 + 60 * 60_000)).toEqual([]);
      });

      it('keeps revocation epochs per agent and for all, never lowering them', async () => {
        expect(await store.getRevocationEpochs()).toEqual({ agents: {} });
        await store.setRevocationEpoch({ agent: 'a' }, T0 + 5);
        await store.setRevocationEpoch('all', T0 + 1);
        expect(await store.getRevocationEpochs()).toEqual({ all: T0 + 1, agents: { a: T0 + 5 } });
        await store.setRevocationEpoch({ agent: 'a' }, T0 + 2);
        await store.setRevocationEpoch('all', T0 + 9);
        expect(await store.getRevocationEpochs()).toEqual({ all: T0 + 9, agents: { a: T0 + 5 } });
      });

      it('lists only active leases at a time (expiry, jti and epoch revocation)', async () => {
        await store.insertLease(lease('old-a', 'a', T0));
        await store.insertLease(lease('new-a', 'a', T0 + 10));
        await store.insertLease(lease('old-b', 'b', T0));
        await store.insertLease(lease('new-b', 'b', T0 + 10));
        await store.insertLease(lease('expired', 'b', T0, { expiresAt: T0 + 50 }));
        await store.insertLease(lease('revoked', 'b', T0 + 10));
        await store.revokeLease('revoked', T0 + 20);
        const active = async (): Promise<string[]> =>
          (await store.listLeases({ activeAt: T0 + 100 })).map((l) => l.jti).sort();

        expect(await active()).toEqual(['new-a', 'new-b', 'old-a', 'old-b']);
        // issuedAt <= epoch is revoked (inclusive).
        await store.setRevocationEpoch({ agent: 'a' }, T0);
        expect(await active()).toEqual(['new-a', 'new-b', 'old-b']);
        await store.setRevocationEpoch('all', T0 + 9);
        expect(await active()).toEqual(['new-a', 'new-b']);
        expect(
          (await store.listLeases({ activeAt: T0 + 100, agent: 'b' })).map((l) => l.jti),
        ).toEqual(['new-b']);
        await store.setRevocationEpoch('all', T0 + 10);
        expect(await active()).toEqual([]);
      });
    });

    describe('signing keys', () => {
      it('inserts active keys, lists oldest first and retires', async () => {
        await store.insertSigningKey({
          kid: 'k2',
          alg: 'ES256',
          publicJwk: { kty: 'EC' },
          privateKeyEnc: 'sealed-2',
          createdAt: T0 + 1,
        });
        await store.insertSigningKey({
          kid: 'k1',
          alg: 'EdDSA',
          publicJwk: jwk,
          privateKeyEnc: 'sealed-1',
          createdAt: T0,
        });
        const keys = await store.listSigningKeys();
        expect(keys.map((k) => k.kid)).toEqual(['k1', 'k2']);
        expect(keys[0]).toEqual({
          kid: 'k1',
          alg: 'EdDSA',
          publicJwk: jwk,
          privateKeyEnc: 'sealed-1',
          status: 'active',
          createdAt: T0,
        });
        const retired = await store.retireSigningKey('k1', T0 + 5, T0 + HOUR);
        expect(retired).toMatchObject({
          status: 'retired',
          retiredAt: T0 + 5,
          verifyUntil: T0 + HOUR,
        });
        expect((await store.listSigningKeys())[0]?.status).toBe('retired');
        await expectCode(store.retireSigningKey('nope', T0, T0), 'not_found');
        await expectCode(
          store.insertSigningKey({
            kid: 'k1',
            alg: 'EdDSA',
            publicJwk: jwk,
            privateKeyEnc: 'x',
            createdAt: T0,
          }),
          'conflict',
        );
      });
    });

    describe('operator tokens', () => {
      it('finds unrevoked tokens by hash, lists and revokes', async () => {
        await store.insertOperatorToken({
          id: 'o1',
          name: 'admin',
          tokenHash: 'h1',
          createdAt: T0,
        });
        await store.insertOperatorToken({
          id: 'o2',
          name: 'ci',
          tokenHash: 'h2',
          createdAt: T0 + 1,
        });
        expect(await store.findOperatorTokenByHash('h1')).toEqual({
          id: 'o1',
          name: 'admin',
          tokenHash: 'h1',
          createdAt: T0,
        });
        expect(await store.findOperatorTokenByHash('nope')).toBeUndefined();
        expect((await store.revokeOperatorToken('o1', T0 + 5)).revokedAt).toBe(T0 + 5);
        expect((await store.revokeOperatorToken('o1', T0 + 9)).revokedAt).toBe(T0 + 5);
        expect(await store.findOperatorTokenByHash('h1')).toBeUndefined();
        const all = await store.listOperatorTokens();
        expect(all.map((t) => [t.id, t.revokedAt])).toEqual([
          ['o1', T0 + 5],
          ['o2', undefined],
        ]);
        await expectCode(store.revokeOperatorToken('nope', T0), 'not_found');
        await expectCode(
          store.insertOperatorToken({ id: 'o1', name: 'x', tokenHash: 'h9', createdAt: T0 }),
          'conflict',
        );
        await expectCode(
          store.insertOperatorToken({ id: 'o9', name: 'x', tokenHash: 'h2', createdAt: T0 }),
          'conflict',
        );
      });
    });

    describe('credentials', () => {
      const put = (name: string, at: number, fieldNames = ['token']) =>
        store.putCredentialVersion(name, {
          fieldNames,
          createdAt: at,
          seal: (version) => `sealed:${name}:${version}`,
        });

      it('increments versions and returns the current one', async () => {
        expect(await put('github', T0)).toEqual({
          name: 'github',
          version: 1,
          fieldNames: ['token'],
          createdAt: T0,
        });
        expect((await put('github', T0 + 10, ['id', 'secret'])).version).toBe(2);
        expect(await store.getCredential('github')).toEqual({
          name: 'github',
          version: 2,
          fieldNames: ['id', 'secret'],
          createdAt: T0,
          updatedAt: T0 + 10,
          sealed: 'sealed:github:2',
        });
        expect(await store.getCredential('nope')).toBeUndefined();
      });

      it('lists metadata only, by name', async () => {
        await put('zeta', T0);
        await put('alpha', T0 + 1);
        await put('alpha', T0 + 2);
        const list = await store.listCredentials();
        expect(list).toEqual([
          {
            name: 'alpha',
            version: 2,
            fieldNames: ['token'],
            createdAt: T0 + 1,
            updatedAt: T0 + 2,
          },
          { name: 'zeta', version: 1, fieldNames: ['token'], createdAt: T0, updatedAt: T0 },
        ]);
        for (const item of list) expect(item).not.toHaveProperty('sealed');
      });

      it('soft-deletes; numbering continues when the name is set again', async () => {
        await put('c', T0);
        await put('c', T0 + 1);
        await store.deleteCredential('c', T0 + 2);
        expect(await store.getCredential('c')).toBeUndefined();
        expect(await store.listCredentials()).toEqual([]);
        await expectCode(store.deleteCredential('c', T0 + 3), 'not_found');
        await expectCode(store.deleteCredential('never', T0 + 3), 'not_found');
        expect(await store.listAllSealed()).toEqual([]);
        expect((await put('c', T0 + 4)).version).toBe(3);
        expect(await store.getCredential('c')).toMatchObject({
          version: 3,
          createdAt: T0 + 4,
          updatedAt: T0 + 4,
        });
      });

      it('allocates distinct versions to concurrent writers', async () => {
        const rows = await Promise.all(Array.from({ length: 12 }, (_, i) => put('c', T0 + i)));
        expect(rows.map((r) => r.version).sort((x, y) => x - y)).toEqual(
          Array.from({ length: 12 }, (_, i) => i + 1),
        );
        expect((await store.getCredential('c'))?.version).toBe(12);
      });

      it('writes nothing when sealing fails (one transaction)', async () => {
        await put('c', T0);
        await expect(
          store.putCredentialVersion('c', {
            fieldNames: ['x'],
            createdAt: T0 + 1,
            seal: () => {
              throw new Error('seal failed');
            },
          }),
        ).rejects.toThrow();
        expect(await store.getCredential('c')).toMatchObject({ version: 1, sealed: 'sealed:c:1' });
        expect((await put('c', T0 + 2)).version).toBe(2);
      });

      it('lists every sealed blob and replaces them by compare-and-swap', async () => {
        await put('a', T0);
        await put('a', T0 + 1);
        await put('b', T0);
        await store.insertSigningKey({
          kid: 'k1',
          alg: 'EdDSA',
          publicJwk: jwk,
          privateKeyEnc: 'sealed:key',
          createdAt: T0,
        });
        const all = await store.listAllSealed();
        expect(all).toHaveLength(3);
        expect(all).toEqual(
          expect.arrayContaining([
            { ref: { kind: 'credential', name: 'a', version: 2 }, sealed: 'sealed:a:2' },
            { ref: { kind: 'credential', name: 'b', version: 1 }, sealed: 'sealed:b:1' },
            { ref: { kind: 'signing_key', kid: 'k1' }, sealed: 'sealed:key' },
          ]),
        );
        const changed = await store.replaceSealed([
          {
            ref: { kind: 'credential', name: 'a', version: 2 },
            previous: 'sealed:a:2',
            sealed: 'A2',
          },
          { ref: { kind: 'credential', name: 'b', version: 1 }, previous: 'stale', sealed: 'B1' },
          { ref: { kind: 'signing_key', kid: 'k1' }, previous: 'sealed:key', sealed: 'K1' },
        ]);
        expect(changed).toBe(2);
        expect((await store.getCredential('a'))?.sealed).toBe('A2');
        expect((await store.getCredential('b'))?.sealed).toBe('sealed:b:1');
        expect((await store.listSigningKeys())[0]?.privateKeyEnc).toBe('K1');
        expect(await store.replaceSealed([])).toBe(0);
      });
    });

    describe('audit', () => {
      it('appends a group in one call with ascending seqs', async () => {
        expect(await store.lastAudit()).toBeUndefined();
        expect(await store.countAudit()).toBe(0);
        const first = chain('genesis', [{}, {}, {}]);
        const seqs = await store.appendAudit(first);
        expect(seqs).toHaveLength(3);
        expect(seqs[1]).toBe((seqs[0] ?? 0) + 1);
        expect(seqs[2]).toBe((seqs[0] ?? 0) + 2);
        const last = first[2] as AuditAppend;
        const more = await store.appendAudit(chain(last.hash, [{}, {}]));
        expect(more[0]).toBe((seqs[2] ?? 0) + 1);
        expect(await store.countAudit()).toBe(5);
        expect(await store.appendAudit([])).toEqual([]);
        const tail = await store.lastAudit();
        expect(tail?.seq).toBe(more[1]);
      });

      it('stores every field and reads in seq order from a seq', async () => {
        const rows = chain('g', [
          { time: T0, kind: 'request', requestId: 'r1', record: { agent: 'a', service: 's' } },
          { time: T0 + 1, kind: 'outcome', requestId: 'r1', record: { status: 200 } },
          { time: T0 + 2, kind: 'request', requestId: 'r2' },
        ]);
        const seqs = await store.appendAudit(rows);
        const read = await store.readAudit({ fromSeq: 0 });
        expect(read.map((r) => r.seq)).toEqual(seqs);
        expect(read[0]).toEqual({
          seq: seqs[0],
          time: T0,
          kind: 'request',
          requestId: 'r1',
          record: rows[0]?.record,
          prevHash: 'g',
          hash: rows[0]?.hash,
          agent: 'a',
          service: 's',
        });
        const fromSecond = await store.readAudit({ fromSeq: seqs[1] ?? 0, limit: 1 });
        expect(fromSecond.map((r) => r.seq)).toEqual([seqs[1]]);
      });

      it('refuses a batch that does not link, writing none of it', async () => {
        const rows = chain('g', [{}, {}]);
        await store.appendAudit(rows);
        const good = chain((rows[1] as AuditAppend).hash, [{}, {}, {}]);
        const broken = [...good.slice(0, 2), { ...(good[2] as AuditAppend), prevHash: 'forked' }];
        await expectCode(store.appendAudit(broken), 'conflict');
        expect(await store.countAudit()).toBe(2);
        await expectCode(store.appendAudit(chain('not-the-tail', [{}])), 'conflict');
        expect(await store.countAudit()).toBe(2);
        expect(await store.appendAudit(good)).toHaveLength(3);
      });

      it('keeps order across sequential group commits', async () => {
        let prev = 'g';
        const all: number[] = [];
        for (let batch = 0; batch < 5; batch++) {
          const rows = chain(prev, [{ requestId: `b${batch}-0` }, { requestId: `b${batch}-1` }]);
          all.push(...(await store.appendAudit(rows)));
          prev = (rows[1] as AuditAppend).hash;
        }
        const read = await store.readAudit({ fromSeq: 0, limit: 100 });
        expect(read.map((r) => r.requestId)).toEqual(
          Array.from({ length: 5 }, (_, b) => [`b${b}-0`, `b${b}-1`]).flat(),
        );
        expect(read.map((r) => r.seq)).toEqual(all);
        for (let i = 1; i < read.length; i++) {
          expect(read[i]?.prevHash).toBe(read[i - 1]?.hash);
        }
      });

      it('queries by agent, service, decision, request id, kind, time and limit', async () => {
        const rows = chain('g', [
          {
            time: T0,
            requestId: 'r1',
            record: { agent: 'a', service: 'github', decision: 'allow' },
          },
          {
            time: T0 + 10,
            requestId: 'r2',
            record: { agent: 'b', service: 'github', decision: 'deny' },
          },
          {
            time: T0 + 20,
            requestId: 'r3',
            record: { agent: 'nexus://example.org/agent/a', service: 'slack', decision: 'deny' },
          },
          { time: T0 + 30, requestId: 'r3', kind: 'outcome', record: { status: 200 } },
        ]);
        // Explicit index fields win over the record's.
        rows[0] = { ...(rows[0] as AuditAppend), decision: 'allow-explicit' };
        await store.appendAudit(rows);
        const ids = async (q: Parameters<Store['queryAudit']>[0]): Promise<string[]> =>
          (await store.queryAudit(q)).map((r) => `${r.requestId}/${r.kind}`);

        expect(await ids({})).toEqual(['r3/outcome', 'r3/request', 'r2/request', 'r1/request']);
        expect(await ids({ order: 'asc', limit: 2 })).toEqual(['r1/request', 'r2/request']);
        // Agent URIs are indexed and matched by the agent name.
        expect(await ids({ agent: 'a' })).toEqual(['r3/request', 'r1/request']);
        expect(await ids({ agent: 'nexus://example.org/agent/a' })).toEqual([
          'r3/request',
          'r1/request',
        ]);
        expect((await store.queryAudit({ requestId: 'r3', kind: 'request' }))[0]?.agent).toBe('a');
        expect(await ids({ service: 'github' })).toEqual(['r2/request', 'r1/request']);
        expect(await ids({ decision: 'deny' })).toEqual(['r3/request', 'r2/request']);
        expect(await ids({ decision: 'allow-explicit' })).toEqual(['r1/request']);
        expect(await ids({ requestId: 'r3' })).toEqual(['r3/outcome', 'r3/request']);
        expect(await ids({ kind: 'outcome' })).toEqual(['r3/outcome']);
        expect(await ids({ since: T0 + 10, until: T0 + 30 })).toEqual(['r3/request', 'r2/request']);
        expect(await ids({ agent: 'a', service: 'slack', decision: 'deny' })).toEqual([
          'r3/request',
        ]);
        expect(await ids({ agent: 'nobody' })).toEqual([]);
      });

      it('stores checkpoints: insert, list, last', async () => {
        expect(await store.lastCheckpoint()).toBeUndefined();
        const rows = chain('g', [{}, {}, {}]);
        const seqs = await store.appendAudit(rows);
        const cp1 = {
          seq: seqs[0] ?? 0,
          hash: rows[0]?.hash ?? '',
          time: T0,
          kid: 'k1',
          jws: 'jws1',
        };
        const cp2 = {
          seq: seqs[2] ?? 0,
          hash: rows[2]?.hash ?? '',
          time: T0 + 1,
          kid: 'k1',
          jws: 'jws2',
        };
        await store.insertCheckpoint(cp2);
        await store.insertCheckpoint(cp1);
        expect(await store.listCheckpoints()).toEqual([cp1, cp2]);
        expect(await store.lastCheckpoint()).toEqual(cp2);
        await expectCode(store.insertCheckpoint(cp1), 'conflict');
        await expectCode(store.insertCheckpoint({ ...cp1, seq: 999_999 }), 'not_found');
      });
    });

    describe('pending OAuth links', () => {
      it('stores, peeks and consumes a link exactly once; expired links are gone', async () => {
        const link = {
          stateHash: 'a'.repeat(64),
          service: 'gh',
          sealed: 's1',
          expiresAt: T0 + 60_000,
        };
        await store.putOAuthPending(link, T0);
        await expectCode(store.putOAuthPending(link, T0), 'conflict');
        expect(await store.peekOAuthPending(link.stateHash, T0)).toBe('gh');
        expect(await store.peekOAuthPending('b'.repeat(64), T0)).toBeUndefined();
        const both = await Promise.all([
          store.takeOAuthPending(link.stateHash, T0),
          store.takeOAuthPending(link.stateHash, T0),
        ]);
        expect(both.filter((r) => r !== undefined)).toEqual([link]);
        expect(await store.peekOAuthPending(link.stateHash, T0)).toBeUndefined();
        const old = { ...link, stateHash: 'c'.repeat(64), expiresAt: T0 + 10 };
        await store.putOAuthPending(old, T0);
        expect(await store.peekOAuthPending(old.stateHash, T0 + 10)).toBeUndefined();
        expect(await store.takeOAuthPending(old.stateHash, T0 + 10)).toBeUndefined();
        // Storing another link sweeps the expired ones.
        const again = { ...old, expiresAt: T0 + 20 };
        await store.putOAuthPending(again, T0);
        await store.putOAuthPending({ ...link, stateHash: 'd'.repeat(64) }, T0 + 30);
        expect(await store.takeOAuthPending(again.stateHash, T0)).toBeUndefined();
      });
    });

    describe('requests held for approval (a cluster shares them)', () => {
      const held = (id: string, node: string, createdAt: number) => ({
        id,
        node,
        view: JSON.stringify({ id, path: '/releases/1' }),
        createdAt,
        expiresAt: createdAt + 60_000,
        aliveUntil: createdAt + 10_000,
      });

      it('lists live undecided requests oldest first; one decision wins; the holder takes it once', async () => {
        const a = { ...held('apr_a', 'n1', T0 + 1), webhookSecret: 'hook-key' };
        const b = held('apr_b', 'n2', T0);
        await store.putHeldApproval(a, T0);
        await store.putHeldApproval(b, T0);
        await expectCode(store.putHeldApproval(a, T0), 'conflict');
        expect(await store.listHeldApprovals(T0 + 2)).toEqual([b, a]);
        expect(await store.getHeldApproval('apr_a', T0 + 2)).toEqual(a);
        expect(await store.getHeldApproval('apr_x', T0 + 2)).toBeUndefined();
        const approver = JSON.stringify({ name: 'ops', token_id: 't1' });
        // Concurrent decisions: exactly one is written.
        const both = await Promise.all([
          store.decideHeldApproval('apr_a', { approved: true, approver }, T0 + 2),
          store.decideHeldApproval('apr_a', { approved: false, approver }, T0 + 2),
        ]);
        expect(both.filter((r) => r !== undefined)).toEqual([a]);
        expect(await store.decideHeldApproval('apr_x', { approved: true, approver }, T0 + 2)).toBe(
          undefined,
        );
        // A decided request is no longer listed nor decidable.
        expect(await store.listHeldApprovals(T0 + 2)).toEqual([b]);
        expect(await store.getHeldApproval('apr_a', T0 + 2)).toBeUndefined();
        // Only its holder's take returns the decision, once.
        expect(await store.takeHeldDecisions('n2')).toEqual([]);
        const taken = await store.takeHeldDecisions('n1');
        expect(taken).toHaveLength(1);
        expect(taken[0]).toMatchObject({ id: 'apr_a', approver });
        expect(await store.takeHeldDecisions('n1')).toEqual([]);
      });

      it('the holder ending a request gets a decision written first, else nothing; once', async () => {
        const approver = JSON.stringify({ name: 'ops', token_id: 't1' });
        await store.putHeldApproval(held('apr_c', 'n1', T0), T0);
        await store.putHeldApproval(held('apr_d', 'n1', T0), T0);
        expect(await store.decideHeldApproval('apr_c', { approved: false, approver }, T0)).toEqual(
          held('apr_c', 'n1', T0),
        );
        expect(await store.endHeldApproval('apr_c')).toEqual({ approved: false, approver });
        expect(await store.endHeldApproval('apr_c')).toBeUndefined();
        expect(await store.endHeldApproval('apr_d')).toBeUndefined();
        // Ended: no longer listed, and a decision finds nothing.
        expect(await store.listHeldApprovals(T0)).toEqual([]);
        expect(await store.decideHeldApproval('apr_d', { approved: true, approver }, T0)).toBe(
          undefined,
        );
        expect(await store.takeHeldDecisions('n1')).toEqual([]);
      });

      it('a holder that stops keeping its rows alive leaves the list; expired rows too', async () => {
        const approver = JSON.stringify({ name: 'ops', token_id: 't1' });
        await store.putHeldApproval(held('apr_e', 'n1', T0), T0);
        await store.putHeldApproval({ ...held('apr_f', 'n2', T0), expiresAt: T0 + 5 }, T0);
        await store.touchHeldApprovals('n1', T0 + 20_000);
        expect((await store.listHeldApprovals(T0 + 15_000)).map((r) => r.id)).toEqual(['apr_e']);
        expect(await store.listHeldApprovals(T0 + 20_000)).toEqual([]);
        expect(await store.getHeldApproval('apr_e', T0 + 20_000)).toBeUndefined();
        expect(
          await store.decideHeldApproval('apr_e', { approved: true, approver }, T0 + 20_000),
        ).toBeUndefined();
        // Storing another request sweeps the rows of dead nodes.
        await store.putHeldApproval(held('apr_g', 'n3', T0 + 30_000), T0 + 30_000);
        expect(await store.endHeldApproval('apr_e')).toBeUndefined();
        expect((await store.listHeldApprovals(T0 + 30_000)).map((r) => r.id)).toEqual(['apr_g']);
      });
    });

    describe('meta and lifecycle', () => {
      it('gets and sets meta values', async () => {
        expect(await store.getMeta('k')).toBeUndefined();
        await store.setMeta('k', 'v1');
        await store.setMeta('k', 'v2');
        expect(await store.getMeta('k')).toBe('v2');
      });

      it('closes idempotently; calls after close reject', async () => {
        await store.close();
        await store.close();
        await expect(store.getMeta('k')).rejects.toThrow();
      });
    });
  });
}
