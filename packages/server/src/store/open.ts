// Opens the store named by the `store` setting of nexus.yaml (a URL-like string).
import { isAbsolute, resolve } from 'node:path';
import { StoreError } from './errors.js';
import { openPostgresStore } from './postgres.js';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite.js';
import type { Store } from './store.js';

/** A parsed `store` setting. */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/**
 * Parses a `store` URL.
 *
 * - `sqlite::memory:` -> an in-memory database;
 * - `sqlite:<path>` -> a file, relative paths resolved against `baseDir` (the directory
 *   of nexus.yaml); `sqlite:///abs/path` is accepted too;
 * - `postgres://...` / `postgresql://...` -> a PostgreSQL database (`store/postgres.ts`);
 * - anything else -> `store_url_invalid`.
 *
 * @example
 * parseStoreUrl('sqlite:.nexus/nexus.db', '/srv/nexus'); // { kind: 'sqlite', path: '/srv/nexus/.nexus/nexus.db' }
 */
export function parseStoreUrl(url: string, baseDir: string): StoreLocation {
  if (/^postgres(ql)?:\/\//i.test(url)) {
    try {
      new URL(url);
    } catch {
      throw new StoreError('store_url_invalid', 'store must be a valid postgres:// URL');
    }
    return { kind: 'postgres', url };
  }
  if (!url.startsWith('sqlite:')) {
    throw new StoreError('store_url_invalid', 'store must be sqlite:<path> or sqlite::memory:');
  }
  let path = url.slice('sqlite:'.length);
  if (path === ':memory:') return { kind: 'sqlite', path };
  if (path.startsWith('//')) {
    // URL form: sqlite:///abs/path (an empty authority) only.
    if (!path.startsWith('///')) {
      throw new StoreError(
        'store_url_invalid',
        'store URL sqlite://host/... is not supported; use sqlite:<path>',
      );
    }
    path = path.slice(2);
  }
  if (path === '' || path.includes('\0') || path.includes('?')) {
    throw new StoreError('store_url_invalid', 'store must be sqlite:<path> or sqlite::memory:');
  }
  return { kind: 'sqlite', path: isAbsolute(path) ? path : resolve(baseDir, path) };
}

/** Options of `openStore`. */
export interface OpenStoreOptions extends SqliteStoreOptions {
  /** Directory relative `sqlite:` paths are resolved against. */
  baseDir: string;
}

/**
 * Opens the store a `store` URL names (see `parseStoreUrl`), migrated and ready.
 *
 * @example
 * const store = await openStore(config.store, { baseDir: dirname(configPath) });
 */
export async function openStore(url: string, options: OpenStoreOptions): Promise<Store> {
  const location = parseStoreUrl(url, options.baseDir);
  if (location.kind === 'postgres') {
    return openPostgresStore(location.url, { readonly: options.readonly === true });
  }
  const { baseDir: _baseDir, ...sqliteOptions } = options;
  return openSqliteStore(location.path, sqliteOptions);
}
