/** Opens the store a validated config names. */
import { NexusError } from '@nexus/protocol';
import type { Config } from '../config/schema.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';

export async function openConfiguredStore(
  config: Config,
  options: { readonly?: boolean } = {},
): Promise<Store> {
  if (config.store.driver !== 'sqlite') {
    throw new NexusError('internal_error', 'only sqlite stores are supported by this version');
  }
  return openSqliteStore(config.store.path, options);
}
