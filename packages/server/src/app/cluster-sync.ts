/**
 * Change fan-out between the nodes of a cluster (issue 13): a revocation, an agent
 * disabled, enabled or created, or a signing key rotated on one node reaches every other
 * node within a second.
 *
 * - The changing node commits the change, writes a new random change token to the
 *   store's meta table (`cluster.change`), then sends a notice: Redis pub/sub when
 *   `redis:` is configured, else PostgreSQL `NOTIFY`. Every other node re-reads agents,
 *   revocations and keys from the store (`Authority.refresh`) when the notice arrives.
 * - Fallback: each node also reads the token every `pollMs` (default 1 s) and re-reads
 *   when it changed, so a notice lost to a dropped connection is caught up; after a
 *   reconnect of the listener a node re-reads at once.
 *
 * Config reloads use the same channel (`nexus reload`, `POST /v1/config/reload`): the
 * node that receives the reload applies it, writes `cluster.reload` and sends a reload
 * notice; every other node re-reads its own config file and sends back a report (its
 * policy hash, or the error code), which the first node collects for a few seconds. The
 * poll reads `cluster.reload` too, so a node that missed the notice still reloads.
 *
 * Decisions on requests held by `approve` rules use it too (app/cluster-approvals.ts): the
 * deciding node sends `approvals <holder's node id>` and the holder takes its decisions
 * from the store at once (it also polls them while it holds something).
 *
 * Revocations are read into memory, so a node keeps refusing a revoked lease while the
 * store or Redis is down; what it cannot learn meanwhile it learns on recovery.
 */
import type { Redis } from 'ioredis';
import pg from 'pg';
import type { Store } from '../store/store.js';
import { errorSummary } from '../proxy/pipeline.js';
import type { Logger } from '../util/logger.js';
import { randomId } from '../util/ids.js';

/** The meta key holding the newest change token. */
export const CHANGE_TOKEN_KEY = 'cluster.change';
/** The PostgreSQL NOTIFY channel (one database per cluster). */
export const PG_CHANNEL = 'nexus_changes';
/** The meta key holding the newest cluster reload (`<node> <reload id>`). */
export const RELOAD_TOKEN_KEY = 'cluster.reload';
/** `application_name` of the LISTEN connections: counts the nodes that get a notice. */
const LISTENER_NAME = 'nexus-sync';

/** What one other node answered to a cluster reload. */
export interface ReloadReport {
  readonly node: string;
  readonly ok: boolean;
  /** The node's reload result (`ok`), e.g. its policy hash. */
  readonly result?: Record<string, unknown>;
  /** The error code (not `ok`); never the message, which may quote the config. */
  readonly code?: string;
}

/** What {@link ClusterSync.publishReload} gathered. */
export interface ClusterReloadOutcome {
  /** Other nodes the notice reached (listeners, or Redis subscribers, but this node). */
  readonly reached: number;
  /** The reports that came back before the deadline. */
  readonly reports: ReloadReport[];
}

/** Options of {@link startClusterSync}. */
export interface ClusterSyncOptions {
  readonly store: Store;
  /** The PostgreSQL URL, for the LISTEN connection when there is no Redis. */
  readonly postgresUrl: string;
  /** The store's pool, for NOTIFY. */
  readonly pool: pg.Pool;
  /** The shared Redis client and key prefix, when configured. */
  readonly redis?: { readonly client: Redis; readonly prefix: string } | undefined;
  /** Re-reads the shared state (`Authority.refresh`). */
  readonly refresh: () => Promise<void>;
  readonly logger: Logger;
  /** How often the change token is read (the fallback). Default 1000 ms. */
  readonly pollMs?: number;
  /** Reloads this node's own config file (a reload sent by another node). */
  readonly reload?: () => Promise<Record<string, unknown>>;
  /** An `approvals <node>` notice arrived: a held request of `node` was decided. */
  readonly approvals?: (node: string) => void;
}

/** A running fan-out; see {@link startClusterSync}. */
export interface ClusterSync {
  /** This node's id in notices (its own notices are ignored). */
  readonly nodeId: string;
  /** Tells every other node that the shared state changed. Never throws. */
  publish(): Promise<void>;
  /**
   * Asks every other node to reload its config file and gathers their reports, until
   * each node the notice reached answered or `waitMs` (default 5 s) passed.
   */
  publishReload(waitMs?: number): Promise<ClusterReloadOutcome>;
  close(): Promise<void>;
}

/** The fan-out of a PostgreSQL cluster's nodes ({@link startClusterSync}). */
export interface NodeClusterSync extends ClusterSync {
  /** Tells `node` that one of its held requests was decided. Never throws. */
  publishApprovals(node: string): Promise<void>;
}

/**
 * Hands a `report <reload id> <json>` notice to the reload gathering it (this node's or
 * this worker's); a report for no gathering, or one that does not parse, is not counted.
 */
export function deliverReport(
  payload: string,
  gathering: ReadonlyMap<string, (report: ReloadReport) => void>,
): void {
  const rest = payload.slice('report '.length);
  const space = rest.indexOf(' ');
  const done = gathering.get(rest.slice(0, space));
  if (done === undefined) return;
  try {
    done(JSON.parse(rest.slice(space + 1)) as ReloadReport);
  } catch {
    // A report that does not parse is not counted.
  }
}

/**
 * Starts listening for other nodes' changes and returns the publisher of this node's.
 *
 * @example
 * const sync = await startClusterSync({ store, postgresUrl, refresh: () => authority.refresh(), logger });
 * authority.onChange = () => sync.publish();
 */
export async function startClusterSync(options: ClusterSyncOptions): Promise<NodeClusterSync> {
  const { store, logger } = options;
  const nodeId = randomId(9);
  const pollMs = options.pollMs ?? 1000;
  let closed = false;
  let lastToken = await store.getMeta(CHANGE_TOKEN_KEY).catch(() => undefined);
  let lastReload = await store.getMeta(RELOAD_TOKEN_KEY).catch(() => undefined);
  /** Reloads this node already ran, by id (a notice and the poll may both bring one). */
  const reloadsDone = new Set<string>();
  /** Reloads this node started and is gathering reports for. */
  const gathering = new Map<string, (report: ReloadReport) => void>();
  let send: (payload: string) => Promise<unknown> = () => Promise.resolve();

  const reloadRequested = (token: string | undefined) => {
    const [from, id] = (token ?? '').split(' ');
    if (from === undefined || id === undefined || from === nodeId || closed) return;
    if (options.reload === undefined || reloadsDone.has(id)) return;
    reloadsDone.add(id);
    if (reloadsDone.size > 1000) reloadsDone.delete(reloadsDone.values().next().value as string);
    void options
      .reload()
      .then(
        (result) => ({ node: nodeId, ok: true, result }),
        (err: unknown) => {
          logger.warn({ err: errorSummary(err) }, 'cluster reload failed on this node');
          const code = (err as { code?: unknown }).code;
          return {
            node: nodeId,
            ok: false,
            code: typeof code === 'string' ? code : 'internal_error',
          };
        },
      )
      .then((report: ReloadReport) =>
        send(`report ${id} ${JSON.stringify(report)}`).catch((err: unknown) =>
          logger.warn({ err: errorSummary(err) }, 'cluster reload report could not be sent'),
        ),
      );
  };

  const refresh = () => {
    if (closed) return;
    options.refresh().catch((err: unknown) => {
      logger.warn({ err: errorSummary(err) }, 'cluster refresh failed; retried on the next change');
      // The next poll tries again: forget the token so it differs.
      lastToken = undefined;
    });
  };

  // --- the fallback: poll the change token ---
  let pollFailed = false;
  const poll = setInterval(() => {
    store.getMeta(CHANGE_TOKEN_KEY).then(
      (token) => {
        if (pollFailed) logger.info('cluster change token readable again');
        pollFailed = false;
        if (token !== lastToken) {
          lastToken = token;
          refresh();
        }
        return store.getMeta(RELOAD_TOKEN_KEY).then((reload) => {
          if (reload !== lastReload) {
            lastReload = reload;
            reloadRequested(reload);
          }
        });
      },
      (err: unknown) => {
        if (!pollFailed) {
          logger.warn({ err: errorSummary(err) }, 'cluster change token unreadable; retrying');
        }
        pollFailed = true;
      },
    );
  }, pollMs);
  poll.unref();

  // --- notices ---
  let stopListening: () => Promise<void>;
  let notify: () => Promise<unknown>;
  let countReceivers: (published: unknown) => Promise<number>;
  const onNotice = (payload: string | undefined) => {
    if (payload?.startsWith('reload ') === true) {
      const token = payload.slice('reload '.length);
      lastReload = token;
      reloadRequested(token);
    } else if (payload?.startsWith('report ') === true) {
      deliverReport(payload, gathering);
    } else if (payload?.startsWith('approvals ') === true) {
      if (!closed) options.approvals?.(payload.slice('approvals '.length));
    } else if (payload !== nodeId) refresh();
  };
  if (options.redis !== undefined) {
    const { client, prefix } = options.redis;
    const channel = `${prefix}changes`;
    // A subscriber connection of its own; its commands may wait for a connection (it
    // only ever subscribes), and it re-subscribes by itself after a reconnect.
    const sub = client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    sub.on('error', () => undefined); // logged by the main client
    let ready = false;
    sub.on('ready', () => {
      // Notices sent while disconnected are lost: catch up on every (re)connect.
      if (ready) refresh();
      ready = true;
    });
    sub.on('message', (_channel: string, message: string) => onNotice(message));
    await sub.subscribe(channel).catch((err: unknown) => {
      logger.warn({ err: errorSummary(err) }, 'redis subscribe failed; polling until it works');
    });
    notify = () => client.publish(channel, nodeId);
    send = (payload) => client.publish(channel, payload);
    // PUBLISH answers how many subscribers got it, this node's own among them.
    countReceivers = (published) => Promise.resolve(Math.max(0, Number(published) - 1));
    stopListening = async () => {
      await sub.quit().catch(() => sub.disconnect());
    };
  } else {
    let listener: pg.Client | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const listen = async (): Promise<void> => {
      const client = new pg.Client({
        connectionString: options.postgresUrl,
        connectionTimeoutMillis: 3000,
        keepAlive: true,
        application_name: LISTENER_NAME,
      });
      const again = () => {
        if (closed || listener !== client) return;
        listener = undefined;
        void client.end().catch(() => undefined);
        retry = setTimeout(() => void listen(), 500);
        retry.unref();
      };
      listener = client;
      client.on('error', again);
      client.on('end', again);
      client.on('notification', (msg) => onNotice(msg.payload));
      try {
        await client.connect();
        await client.query(`LISTEN ${PG_CHANNEL}`);
        // Changes made while this node was not listening are caught up now.
        refresh();
      } catch {
        again();
      }
    };
    await listen();
    // NOTIFY through the store's pool: a connection of the shared pool, no new one.
    const pool = options.pool;
    notify = () => pool.query('SELECT pg_notify($1, $2)', [PG_CHANNEL, nodeId]);
    send = (payload) => pool.query('SELECT pg_notify($1, $2)', [PG_CHANNEL, payload]);
    // Every node's LISTEN connection is named: count the others on this database.
    countReceivers = async () => {
      const r = await pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1`,
        [LISTENER_NAME],
      );
      return Math.max(0, Number((r.rows[0] as { n: number }).n) - 1);
    };
    stopListening = async () => {
      if (retry !== undefined) clearTimeout(retry);
      const client = listener;
      listener = undefined;
      await client?.end().catch(() => undefined);
    };
  }

  return {
    nodeId,
    async publish() {
      if (closed) return;
      try {
        // The token first: a node that misses the notice still sees the token change.
        await store.setMeta(CHANGE_TOKEN_KEY, `${nodeId}.${randomId(9)}`);
        await notify();
      } catch (err) {
        logger.warn(
          { err: errorSummary(err) },
          'cluster change notice failed; other nodes catch up by polling',
        );
      }
    },
    async publishReload(waitMs = 5000) {
      const id = randomId(9);
      const reports: ReloadReport[] = [];
      let reached = 0;
      let wake = () => undefined as void;
      gathering.set(id, (report) => {
        if (reports.some((r) => r.node === report.node)) return;
        reports.push(report);
        wake();
      });
      try {
        // The token first: a node that misses the notice reloads on its next poll.
        await store.setMeta(RELOAD_TOKEN_KEY, `${nodeId} ${id}`);
        lastReload = `${nodeId} ${id}`;
        reached = await countReceivers(await send(`reload ${nodeId} ${id}`));
        const deadline = Date.now() + waitMs;
        while (reports.length < reached && Date.now() < deadline) {
          await new Promise<void>((r) => {
            const timer = setTimeout(r, deadline - Date.now());
            wake = () => {
              clearTimeout(timer);
              r();
            };
          });
        }
      } catch (err) {
        logger.warn({ err: errorSummary(err) }, 'cluster reload notice failed');
      } finally {
        gathering.delete(id);
      }
      return { reached, reports: [...reports] };
    },
    async publishApprovals(node) {
      if (closed) return;
      try {
        await send(`approvals ${node}`);
      } catch (err) {
        logger.warn(
          { err: errorSummary(err) },
          'approval notice failed; the holding node reads its decisions by polling',
        );
      }
    },
    async close() {
      closed = true;
      clearInterval(poll);
      await stopListening();
    },
  };
}
