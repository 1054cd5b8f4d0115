// Authority signing keys over a real SQLite store and vault: the kid is 96 random bits
// (spec §11.2), and `authority.signing_alg` changed on an existing node takes effect
// (issue 16: an EdDSA node configured for ES256 kept signing EdDSA).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../store/sqlite.js';
import { keyringFromValue } from '../vault/master-key.js';
import { createVault } from '../vault/vault.js';
import { SigningKeys } from './signing-keys.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SigningKeys (issue 16)', () => {
  it('kid: 96 random bits, hex; a changed signing_alg rotates at once', async () => {
    let now = 1_785_000_000_000;
    const clock = () => now;
    const store = openSqliteStore(join(dir, 'nexus.db'));
    const keyring = keyringFromValue(`v1:${randomBytes(32).toString('base64')}`);
    const vault = createVault({ store, keyring, clock });
    const keys = new SigningKeys(store, vault, clock);
    await keys.init('EdDSA');
    const first = keys.active();
    expect(first.alg).toBe('EdDSA');
    expect(first.kid).toMatch(/^[0-9a-f]{24}$/);
    // Same algorithm, no period: nothing to do.
    expect(await keys.rotateIfDue('EdDSA', Number.POSITIVE_INFINITY, 900_000)).toBeUndefined();

    // The node restarts with authority.signing_alg: ES256.
    const again = new SigningKeys(store, vault, clock);
    await again.init('ES256');
    expect(again.active().alg).toBe('EdDSA'); // what the store holds
    const rotated = await again.rotateIfDue('ES256', Number.POSITIVE_INFINITY, 900_000);
    expect(rotated?.alg).toBe('ES256');
    expect(again.active().alg).toBe('ES256');
    // The EdDSA key keeps verifying the leases it signed, then leaves the JWKS.
    expect(again.jwks().keys.map((k) => k.alg)).toEqual(['EdDSA', 'ES256']);
    expect(again.publicKey(first.kid)).toBeDefined();
    now += 900_001;
    expect(again.publicKey(first.kid)).toBeUndefined();
    expect(again.jwks().keys.map((k) => k.alg)).toEqual(['ES256']);
    await store.close();
  });
});
