/**
 * `nexus init` after the config file is written: the master key file, the database with
 * its migrations and vault key check, the first Authority signing key and the first
 * operator token (returned once; only its hash is stored).
 */
import { access } from 'node:fs/promises';
import type { Config } from '../config/schema.js';
import { createKeyFile, loadKeyring } from '../vault/master-key.js';
import { createVault } from '../vault/vault.js';
import { Authority } from '../authority/authority.js';
import { createOperatorToken } from '../admin/server.js';
import { openConfiguredStore } from './open-store.js';

export async function initNode(
  config: Config,
  clock: () => number = Date.now,
): Promise<{ operatorToken: string }> {
  if (config.master_key.source === 'file') {
    const exists = await access(config.master_key.path).then(
      () => true,
      () => false,
    );
    if (!exists) createKeyFile(config.master_key.path);
  }
  const store = await openConfiguredStore(config, { create: true });
  try {
    const vault = createVault({ store, keyring: keyringFor(config), clock });
    await vault.init();
    const authority = new Authority(authoritySettings(config), store, vault, clock);
    await authority.init();
    const { token } = await createOperatorToken(store, 'initial', clock());
    return { operatorToken: token };
  } finally {
    await store.close();
  }
}

/** The vault keyring from NEXUS_MASTER_KEY (when set) or the key file. */
export function keyringFor(config: Config) {
  return loadKeyring({
    envValue: config.master_key.source === 'env' ? config.master_key.value.reveal() : undefined,
    keyFile: config.master_key_file,
  });
}

/** The Authority's settings from the config. */
export function authoritySettings(config: Config) {
  return {
    issuer: config.authority.issuer,
    proxyUrl: config.proxy.public_url,
    trustDomain: config.authority.trust_domain,
    leaseTtlMs: config.authority.lease_ttl,
    leaseMaxLifetimeMs: config.authority.lease_max_lifetime,
    enrollmentTtlMs: config.authority.enrollment_ttl,
    signingAlg: config.authority.signing_alg,
    clockSkewMs: config.authority.clock_skew,
    configAgents: config.agents,
  };
}
