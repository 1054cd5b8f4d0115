// The `redis` section of nexus.yaml (issue 13): the Redis a cluster's nodes share for
// replay records, change notices and limit counters. Optional: without it a PostgreSQL cluster uses the
// database for both, and a single SQLite node needs neither.
import { z } from 'zod';

/** The validated `redis` section. */
export interface RedisConfig {
  /** `redis://host:port/db` or `rediss://...` (TLS); never a password. */
  readonly url: string;
  /** Prefix of every key Nexus writes; nodes of one cluster MUST use the same. */
  readonly key_prefix: string;
}

/**
 * `redis: redis://host:6379/0`, or `redis: { url: ..., key_prefix: nexus: }`.
 *
 * @example
 * redisSchema.parse('redis://127.0.0.1:6379'); // { url: 'redis://127.0.0.1:6379', key_prefix: 'nexus:' }
 */
export const redisSchema = z
  .union([z.string(), z.strictObject({ url: z.string(), key_prefix: z.string().optional() })])
  .transform((v, ctx): RedisConfig => {
    const { url, key_prefix } = typeof v === 'string' ? { url: v, key_prefix: undefined } : v;
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')) {
      ctx.addIssue({ code: 'custom', message: 'must be a redis:// or rediss:// URL' });
      return z.NEVER;
    }
    // MUST NOT carry secrets: nexus.yaml is not a secret store.
    if (parsed.password !== '') {
      ctx.addIssue({
        code: 'custom',
        message: 'must not contain a password; restrict Redis to the nodes by network and ACL',
      });
      return z.NEVER;
    }
    const prefix = key_prefix ?? 'nexus:';
    if (!/^[A-Za-z0-9:._-]{0,64}$/.test(prefix)) {
      ctx.addIssue({ code: 'custom', message: 'key_prefix: letters, digits and ":._-", max 64' });
      return z.NEVER;
    }
    return { url, key_prefix: prefix };
  });
