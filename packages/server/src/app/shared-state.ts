/**
 * The state a cluster's nodes share beyond the store (issue 13): replay records, through
 * Redis when `redis:` is configured, else through a PostgreSQL store; a single node on
 * SQLite without Redis keeps its in-memory cache (`proxy/replay-cache.ts`).
 */
import { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { PostgresStore } from '../store/postgres.js';
import {
  createPostgresReplayGuard,
  createRedisReplayGuard,
  type SharedReplayGuard,
} from '../proxy/replay-shared.js';
import { errorSummary } from '../proxy/pipeline.js';
import type { Logger } from '../util/logger.js';

/** What {@link openSharedState} opened. */
export interface SharedState {
  /** The shared replay guard; undefined: this node keeps its own (in memory). */
  readonly replay: SharedReplayGuard | undefined;
  /** The Redis client, when `redis:` is configured. */
  readonly redis: Redis | undefined;
  close(): Promise<void>;
}

/**
 * Opens the shared state a config names. Waits up to 2 s for Redis, never longer: a node
 * starts while Redis is down and refuses, with 503 `replay_unavailable`, what needs it
 * until it is back.
 */
export async function openSharedState(options: {
  readonly config: Config;
  readonly postgres: PostgresStore | undefined;
  readonly clock: () => number;
  readonly logger: Logger;
}): Promise<SharedState> {
  const { config, postgres, clock, logger } = options;
  const skewSeconds = Math.ceil(config.proxy.signature_skew / 1000);
  let redis: Redis | undefined;
  let replay: SharedReplayGuard | undefined;
  if (config.redis !== undefined) {
    redis = new Redis(config.redis.url, {
      // Fail closed at once while disconnected: no command waits in a queue for Redis.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: 2000,
      connectTimeout: 2000,
      // Reconnect forever, at most one second apart: the node recovers by itself.
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
    let down = false;
    redis.on('error', (err: unknown) => {
      if (down) return;
      down = true;
      logger.error({ err: errorSummary(err) }, 'redis unreachable: requests that need it get 503');
    });
    redis.on('ready', () => {
      if (down) logger.info('redis reachable again');
      down = false;
    });
    // Give Redis a moment to answer before the node listens, so its first requests are
    // not refused for a connection still being made; a Redis that is down stays a 503.
    const client = redis;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 2000);
      function done() {
        clearTimeout(timer);
        client.off('ready', done);
        resolve();
      }
      if (client.status === 'ready') done();
      else client.once('ready', done);
    });
    replay = createRedisReplayGuard(redis, config.redis.key_prefix, { skewSeconds, clock });
  } else if (postgres !== undefined) {
    replay = createPostgresReplayGuard(postgres.pool, {
      skewSeconds,
      clock,
      onSweepError: (err) =>
        logger.warn({ err: errorSummary(err) }, 'replay record sweep failed; retried later'),
    });
  }
  return {
    replay,
    redis,
    async close() {
      await replay?.close();
      if (redis !== undefined) {
        await redis.quit().catch(() => redis?.disconnect());
      }
    },
  };
}
