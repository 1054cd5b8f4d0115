/**
 * `startNexus`: wires every component for `nexus up` in one process. Config is loaded and
 * validated by the caller (the CLI); everything else is built here, in dependency order:
 * store -> vault -> authority -> policy -> mechanics -> audit -> proxy and admin listeners.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { NexusError } from '@nexus-proxy/protocol';
import type { Config } from '../config/schema.js';
import { openNodeStore } from './open-store.js';
import { authoritySettings, keyringFor } from './init.js';
import type { Store } from '../store/store.js';
import { StoreError } from '../store/errors.js';
import { createVault, type Vault } from '../vault/vault.js';
import { generateMasterKey } from '../vault/master-key.js';
import { Authority } from '../authority/authority.js';
import { createAuthorityHandler } from '../authority/http.js';
import { compilePolicy } from '../policy/compile.js';
import { reachableServices } from '../config/reach.js';
import { createPassthroughDecider } from '../authority/passthrough.js';
import { MECHANICS } from '../mechanics/index.js';
import { connectionsOf, type OAuthConnections } from '../mechanics/oauth2-authorization-code.js';
import { createAuditWriter, type AuditWriter } from '../audit/writer.js';
import type { AuditCheckpoint } from '../audit/chain.js';
import { auditSinkFromStore } from '../audit/sink.js';
import {
  appendCheckpointFile,
  checkpointFilePath,
  loadCheckpoints,
} from '../audit/checkpoint-file.js';
import { openThreadedAuditWriter, type ThreadedAuditWriter } from '../audit/threaded-writer.js';
import { verifyAuditLog } from './verify-audit.js';
import { createPipeline, errorSummary, type ServiceRuntime } from '../proxy/pipeline.js';
import { createReplayCache } from '../proxy/replay-cache.js';
import { restoreReplayState, saveReplayState } from './replay-state.js';
import { openSharedState, type SharedState } from './shared-state.js';
import { storeOAuthCoordination } from './oauth-coordination.js';
import { startClusterSync, type ClusterSync } from './cluster-sync.js';
import { sendProblem } from '../proxy/problem.js';
import { createWebSocketRelays, isWebSocketUpgrade, upgradeResponse } from '../proxy/websocket.js';
import { installResponseSigner } from '../proxy/sign-response.js';
import { answerClientError, lacksHost, refuseNoHost } from '../proxy/client-error.js';
import { createAdminHandler } from '../admin/server.js';
import { createConsoleHandler, isConsolePath } from '../console/handler.js';
import { ConsoleOidc } from '../console/oidc.js';
import { PersonTokens } from '../admin/callers.js';
import { createLogger, type Logger } from '../util/logger.js';
import { randomId } from '../util/ids.js';
import { createMetrics, type NexusMetrics } from '../metrics/metrics.js';
import { readScrapeToken } from '../metrics/scrape-token.js';
import { createLimiter } from '../limits/limiter.js';
import { explanationJson } from '../policy/explain-json.js';
import { listenError } from './listen-error.js';
import { accessLog } from '../proxy/access-log.js';
import { combineObservers } from '../proxy/observe.js';
import { nodeStatus } from './status.js';
import { shareWorkerStatus } from './worker-status.js';
import { ApprovalQueue } from '../approvals/queue.js';
import { MemoryLimitCounterStore } from '../limits/counter-store.js';
import { limitsView } from '../limits/view.js';
import { diffConfig, type ConfigDiff } from './config-diff.js';
import { getPreset } from '../presets/presets.js';
import { addServiceToConfigText, renderPresetService } from '../presets/apply.js';
import type { AddServiceInput } from '../admin/services.js';
import { RedisLimitCounterStore } from '../limits/redis-counter-store.js';
import { createTracing } from '../telemetry/tracing.js';
import { createApprovalWebhooks } from '../approvals/webhook.js';
import { localBoard } from '../approvals/board.js';
import type { WorkerRole } from './workers.js';
import { startWorkerSync } from './worker-sync.js';
import { shareWorkerMetrics } from './worker-metrics.js';
import { workerOidcFlows, workerPersonTokens, workerSessionTable } from './worker-sessions.js';
import { workerApprovalBoard } from './worker-approvals.js';
import { ClusterApprovals } from './cluster-approvals.js';
import { workerOAuthExclusive } from './worker-oauth-locks.js';
import { primaryPeer } from './ipc-peer.js';
import { forgetAtMs, replayKey } from '../proxy/replay-shared.js';
import type { ReplayGuard } from '../proxy/replay-cache.js';

export interface StartOptions {
  readonly config: Config;
  readonly logger?: Logger;
  readonly clock?: () => number;
  /** Overrides the listen ports (tests use 0). */
  readonly proxyPort?: number;
  readonly adminPort?: number;
  /**
   * Re-reads and validates nexus.yaml for `reload()` (SIGHUP, `POST /v1/config/reload`).
   * Without it the node cannot reload.
   */
  readonly reloadConfig?: () => Promise<Config>;
  /**
   * Absolute path of nexus.yaml, for `POST /v1/services` (a service added from a preset is
   * written into it, then reloaded). Without it (or `reloadConfig`) the route is refused.
   */
  readonly configFile?: string;
  /** A worker of `nexus up --workers N` (app/workers.ts): set by its primary. */
  readonly worker?: WorkerRole;
}

/** What a reload applied, and which changed sections only take effect on a restart. */
export interface ReloadResult {
  readonly services: number;
  readonly agents: number;
  readonly policy_hash: string;
  readonly restart_required: string[];
  /** What changed against the running configuration (app/config-diff.ts). */
  readonly changes: ConfigDiff;
}

export interface RunningNexus {
  readonly proxyUrl: string;
  readonly adminUrl: string;
  readonly store: Store;
  readonly vault: Vault;
  readonly authority: Authority;
  readonly audit: AuditWriter;
  /** The node's Prometheus metrics (served at `/metrics` on the admin listener). */
  readonly metrics: NexusMetrics;
  /**
   * Applies a new nexus.yaml without a restart: services, agents and policies are swapped
   * in for the next request (in-flight requests finish on the old ones). Other sections
   * are reported in `restart_required`.
   */
  reload(): Promise<ReloadResult>;
  /** Stops accepting, drains in-flight requests, writes a final checkpoint, closes the store. */
  close(): Promise<void>;
}

function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function urlOf(addr: AddressInfo): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${host}:${addr.port}`;
}

/** Reads `services.<name>.tls.ca_file`; a missing or unreadable file stops start-up. */
function readCaFile(service: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new NexusError('internal_error', `service "${service}": cannot read tls.ca_file`);
  }
}

/**
 * Refuses to start on an audit chain that lost records its own checkpoint file vouches for:
 * shorter than the newest checkpoint there, or with another record at its seq (the store
 * was truncated, or restored from an older backup). Silently appending would write new
 * records over the missing seqs (issue 10, black-box re-run).
 *
 * @throws StoreError `audit_truncated`
 */
async function checkNotTruncated(store: Store, file: string): Promise<void> {
  if (!existsSync(file)) return;
  const newest = (await loadCheckpoints(file)).at(-1);
  if (newest === undefined) return;
  const [row] = await store.readAudit({ fromSeq: newest.seq, limit: 1 });
  if (row !== undefined && row.seq === newest.seq && row.hash === newest.hash) return;
  throw new StoreError(
    'audit_truncated',
    `the audit chain no longer holds the record of the newest checkpoint in ${file} (seq ${newest.seq}): the store was truncated or restored from an older backup. Check with \`nexus audit verify --against ${file}\`; to start on a restored store, move that file aside first`,
  );
}

export async function startNexus(options: StartOptions): Promise<RunningNexus> {
  const { config } = options;
  const clock = options.clock ?? Date.now;
  const logger = options.logger ?? createLogger(config.log.level, undefined, config.log.format);
  const startedAt = clock();
  // Workers: one scrape of any worker shows the whole process group (app/worker-metrics.ts).
  const metrics = createMetrics(options.worker === undefined ? undefined : shareWorkerMetrics);
  // Read before anything is opened: a missing or unreadable scrape token stops start-up.
  const scrapeToken =
    config.admin.metrics.token_file === undefined
      ? undefined
      : readScrapeToken(config.admin.metrics.token_file);

  // A store file deleted or replaced under the node: said once, loudly; every write
  // after it fails closed (`store_unavailable`; proxied requests get `audit_unavailable`).
  let faultLogged = false;
  const onStoreFault = (err: unknown) => {
    if (faultLogged) return;
    faultLogged = true;
    logger.error(
      { err: errorSummary(err) },
      'store file deleted or replaced under the running node: nothing more is written or forwarded; stop the node, restore the file and start it again',
    );
  };
  const worker = options.worker;
  // Workers on SQLite: the primary holds the node lock and the workers share the file.
  const sqliteWorker = worker !== undefined && config.store.driver === 'sqlite';
  const { store, sqlite, postgres, lock } = await openNodeStore(
    config,
    onStoreFault,
    (err) =>
      logger.warn({ err: errorSummary(err) }, 'an idle database connection failed; it is replaced'),
    sqliteWorker,
  );
  if (postgres !== undefined) {
    logger.info({ audit_chain: postgres.chain }, 'audit chain of this node');
  }
  let appender: ThreadedAuditWriter | undefined;
  let shared: SharedState | undefined;
  let sync: ClusterSync | undefined;
  // A PostgreSQL cluster's held requests (app/cluster-approvals.ts): created with the sync.
  let clusterApprovals: ClusterApprovals | undefined;
  try {
    const vault = createVault({ store, keyring: keyringFor(config), clock });
    await vault.init();

    const publicUrl = config.proxy.public_url;
    const authority = new Authority(authoritySettings(config), store, vault, clock);
    await authority.init();
    // A cluster (PostgreSQL): replay records shared (Redis, else the database), and every
    // change to agents, revocations and keys sent to the other nodes (issue 13).
    shared = await openSharedState({ config, postgres, clock, logger });
    // OAuth connections: one refresh at a time across nodes (or across the workers on
    // SQLite: the primary's lock, app/worker-oauth-locks.ts), pending links in the store.
    const oauthShared = storeOAuthCoordination({
      store,
      vault,
      pool: postgres?.pool,
      workerLock: sqliteWorker ? workerOAuthExclusive(primaryPeer()) : undefined,
      clock,
    });
    if (postgres !== undefined && config.store.driver === 'postgres') {
      const s = await startClusterSync({
        store,
        pool: postgres.pool,
        postgresUrl: config.store.url,
        redis:
          shared.redis === undefined || config.redis === undefined
            ? undefined
            : { client: shared.redis, prefix: config.redis.key_prefix },
        refresh: () => authority.refresh(),
        // A reload sent by another node: this node re-reads its own config file.
        reload:
          options.reloadConfig === undefined ? undefined : async () => ({ ...(await reload()) }),
        // A held request of this node was decided on another (app/cluster-approvals.ts).
        approvals: (node) => clusterApprovals?.noticed(node),
        logger,
      });
      sync = s;
      authority.onChange = () => s.publish();
      clusterApprovals = new ClusterApprovals({
        store,
        nodeId: s.nodeId,
        clock,
        logger,
        notify: (node) => s.publishApprovals(node),
      });
    } else if (sqliteWorker) {
      // Workers of one node: changes relayed through the primary (app/worker-sync.ts).
      const s = startWorkerSync({
        nodeId: `${randomId(6)}/${worker.id}`,
        refresh: () => authority.refresh(),
        reload:
          options.reloadConfig === undefined ? undefined : async () => ({ ...(await reload()) }),
        logger,
        others: () => worker.count - 1,
      });
      sync = s;
      authority.onChange = () => s.publish();
    }
    // Singletons (key rotation, periodic checkpoints) run in worker 1 only.
    const singletons = worker === undefined || worker.id === 1;
    // Problems this node generates are signed with the Authority's active key (spec §10.4).
    installResponseSigner({ key: () => authority.keys.active(), clock });
    // Scheduled signing-key rotation (authority.key_rotation); retired keys keep verifying
    // until the last lease they signed has expired.
    const rotationPeriod = config.authority.key_rotation;
    // Also when the active key is not of `authority.signing_alg` (issue 16): the configured
    // algorithm takes effect at start, without waiting for a scheduled rotation.
    const rotateIfDue = async () => {
      const key = await authority.keys.rotateIfDue(
        config.authority.signing_alg,
        rotationPeriod ?? Number.POSITIVE_INFINITY,
        config.authority.lease_ttl,
      );
      if (key !== undefined) {
        logger.info({ kid: key.kid, alg: key.alg }, 'authority signing key rotated');
        await authority.keysChanged();
      }
    };
    if (singletons) await rotateIfDue();
    const rotationTimer = setInterval(() => {
      if (!singletons) return;
      rotateIfDue().catch((err: unknown) =>
        logger.error({ err: errorSummary(err) }, 'signing key rotation failed'),
      );
    }, 3_600_000);
    rotationTimer.unref();

    let policy = compilePolicy(config);
    let current = config;
    const checkpointFile =
      sqlite !== undefined && sqlite.path !== ':memory:'
        ? checkpointFilePath(sqlite.path)
        : undefined;
    const onCheckpointError = (err: unknown) =>
      logger.error({ err: errorSummary(err) }, 'audit checkpoint failed');
    // Every checkpoint also leaves the database: as a log line and a line in the
    // checkpoint file, both for the operator to ship elsewhere, so that removing the
    // newest rows and checkpoints from the database is detected (`verify --against`).
    const onCheckpoint = async (cp: AuditCheckpoint) => {
      logger.info(
        { checkpoint: { seq: cp.seq, hash: cp.hash, time: cp.time, kid: cp.kid, jws: cp.jws } },
        'audit checkpoint',
      );
      if (checkpointFile !== undefined) await appendCheckpointFile(checkpointFile, cp);
    };
    // A file database: the audit writer runs in a worker thread with its own connection
    // (it owns the chain head, hashes and group-commits), so none of it runs on the event
    // loop. `:memory:` cannot be shared between connections, and PostgreSQL (one chain per
    // node process, asynchronous I/O) keeps the writer on this thread.
    if (sqlite !== undefined && sqlite.path !== ':memory:') {
      // The path the store was opened at (symbolic links resolved): the thread's connection
      // MUST name the same file, or SQLite would give it a WAL of its own.
      appender = await openThreadedAuditWriter(sqlite.path, {
        expectFiles: sqlite.files,
        lock: lock === undefined ? undefined : { path: lock.path, identity: lock.identity },
        // Other workers: no periodic checkpoint (each still writes one when it stops).
        checkpointEvery: singletons ? config.audit.checkpoint_every : Number.POSITIVE_INFINITY,
        checkpointIntervalMs: singletons ? config.audit.checkpoint_interval : 0,
        signCheckpoint: (payloadText) => authority.signCheckpoint(payloadText),
        onError: onCheckpointError,
        onCheckpoint,
        onStoreFault,
      });
    }
    const audit: AuditWriter =
      appender ??
      createAuditWriter({
        sink: auditSinkFromStore(store),
        clock,
        checkpointEvery: config.audit.checkpoint_every,
        checkpointIntervalMs: config.audit.checkpoint_interval,
        signCheckpoint: (_payload, payloadText) => authority.signCheckpoint(payloadText),
        onError: onCheckpointError,
        onCheckpoint,
      });
    await audit.init();
    if (checkpointFile !== undefined) await checkNotTruncated(store, checkpointFile);

    const services = new Map<string, ServiceRuntime>();
    // Known once the admin listener is bound (OAuth connection redirect URIs).
    let adminBase: string | undefined = undefined;
    let proxyBase: string | undefined = undefined;
    let pools: Dispatcher[] = [];
    const retirers = new WeakMap<ServiceRuntime, () => void>();
    const buildServices = (
      cfg: Config,
      into: Map<string, ServiceRuntime>,
      poolsOut: Dispatcher[],
    ) => {
      for (const svc of Object.values(cfg.services)) {
        const def = MECHANICS.get(svc.auth.type);
        if (def === undefined)
          throw new NexusError('internal_error', `unknown auth type ${svc.auth.type}`);
        const upstream = new URL(svc.upstream);
        const { type: _type, ...authOptions } = svc.auth;
        // A private CA for this upstream (services.<name>.tls.ca_file), read once at start.
        const ca = readCaFile(svc.name, svc.tls?.ca_file);
        // The connection pool is made on the service's first request: an idle undici Pool
        // is ~18 KB of heap, 180 MB for 10,000 configured services, which every major GC
        // then marks (growth bench, issue 7).
        let pool: Pool | undefined;
        const dispatcher = (): Pool => {
          if (pool === undefined) {
            pool = new Pool(upstream.origin, {
              connect: { timeout: svc.timeouts.connect, ...(ca === undefined ? {} : { ca }) },
              headersTimeout: svc.timeouts.headers,
              bodyTimeout: svc.timeouts.body,
              connections: 128,
            });
            poolsOut.push(pool);
          }
          return pool;
        };
        const mechanic = def.create(svc.name, def.optionsSchema.parse(authOptions), {
          clock,
          upstream: { ca, connectTimeoutMs: svc.timeouts.connect },
          vault,
          adminUrl: () => adminBase,
          onTokenFetch: (ok) => metrics.tokenRefresh(svc.name, ok),
          oauth: oauthShared,
        });
        // In-flight requests hold the runtime; a reload retires it and the pool and
        // mechanic close when the last of them is done.
        let holders = 0;
        let retired = false;
        const closeRuntime = () => {
          void pool?.close().catch(() => undefined);
          void mechanic.close?.().catch(() => undefined);
        };
        const runtime: ServiceRuntime = {
          name: svc.name,
          upstream,
          mechanic,
          credential: svc.auth.credential,
          kind: svc.kind,
          ...(svc.cost === undefined ? {} : { cost: svc.cost }),
          removeHeaders: svc.scrub.remove_headers,
          get dispatcher() {
            return dispatcher();
          },
          headersTimeoutMs: svc.timeouts.headers,
          bodyTimeoutMs: svc.timeouts.body,
          ...(svc.websocket
            ? {
                websocket: {
                  ...(ca === undefined ? {} : { ca }),
                  connectTimeoutMs: svc.timeouts.connect,
                },
              }
            : {}),
          acquire: () => {
            holders++;
            let released = false;
            return () => {
              if (released) return;
              released = true;
              holders--;
              if (retired && holders === 0) closeRuntime();
            };
          },
        };
        retirers.set(runtime, () => {
          retired = true;
          if (holders === 0) closeRuntime();
        });
        into.set(svc.name, runtime);
      }
    };
    buildServices(config, services, pools);
    // Tell the operator now, not the agent later: a service whose credential is not set
    // answers every request with credential_unavailable.
    const warnMissingCredentials = async (cfg: Config) => {
      for (const svc of Object.values(cfg.services)) {
        const name = svc.auth.credential;
        if (name !== undefined && (await vault.describe(name)) === undefined) {
          logger.warn(
            { service_name: svc.name, credential: name },
            `credential "${name}" of service "${svc.name}" is not set (nexus credential set ${name})`,
          );
        }
      }
    };
    await warnMissingCredentials(config);

    // Replay records: shared by the cluster (Redis, else PostgreSQL) or this node's own.
    const memoryReplay = createReplayCache({
      maxEntries: config.proxy.replay_cache_size,
      skewSeconds: Math.ceil(config.proxy.signature_skew / 1000),
      clock,
    });
    // Workers on SQLite without Redis: each (lease, nonce) pair forwarded is recorded in
    // the store's replay_nonces by the audit thread, in the same transaction as the request
    // record (a unique key: a pair another worker recorded refuses the record, and the
    // request, as a replay), behind this worker's own cache as a pre-filter (a replay to the
    // same worker costs no write). No extra write or hop, and the record survives a crash
    // exactly when the request record does (issue 14 step 4).
    const claimInAudit = sqliteWorker && sqlite !== undefined && shared.replay === undefined;
    if (claimInAudit && appender === undefined) {
      // Fail closed: only the audit thread's transaction makes the claims.
      throw new NexusError('internal_error', 'workers on SQLite need the audit thread');
    }
    const skewSeconds = Math.ceil(config.proxy.signature_skew / 1000);
    const replay: ReplayGuard =
      shared.replay ??
      (claimInAudit
        ? {
            checkAndRecord: (leaseId, nonce, expires) =>
              memoryReplay.checkAndRecord(leaseId, nonce, expires),
            claim: (leaseId, nonce, expires) => ({
              key: replayKey(leaseId, nonce),
              forgetAt: forgetAtMs(expires, { skewSeconds, clock }),
              exclusive: true,
            }),
          }
        : memoryReplay);
    // A shared cache outlives this node's restarts: no restart barrier is needed (spec §9).
    // Workers: the primary decided the barrier (a previous single process's records).
    const notBefore =
      worker !== undefined
        ? worker.notBefore
        : shared.replay === undefined
          ? await restoreReplayState(store, memoryReplay, startedAt)
          : 0;
    // Requests held by `approve` rules; in memory: a node that stops ends them.
    // A rule's webhook approver hears of each of its held requests (approvals/webhook.ts).
    // A PostgreSQL cluster shares them through the store (app/cluster-approvals.ts).
    const approvals = new ApprovalQueue({
      clock,
      onHeld: (view, webhook, body) => webhooks.notify(view, webhook, body),
      ...(clusterApprovals === undefined ? {} : { sharing: clusterApprovals }),
    });
    // What the admin API and webhook callbacks act on: on PostgreSQL, every node's held
    // requests (and every worker's: each is a node of the cluster); under --workers on
    // SQLite, every worker's (app/worker-approvals.ts). Each process's gauge counts its own
    // (summed by the /metrics aggregation under --workers).
    const approvalBoard =
      clusterApprovals !== undefined
        ? clusterApprovals.board(approvals)
        : worker === undefined
          ? localBoard(approvals)
          : workerApprovalBoard(approvals);
    const webhooks = createApprovalWebhooks({
      board: approvalBoard,
      resolveSecret: async (name) => (await vault.resolve(name)).fields.value,
      clock,
      logger,
      adminUrl: () => adminBase,
    });
    // Counters shared by the cluster through Redis when `redis:` is configured, else in
    // this process.
    const limitStore =
      shared.redis !== undefined && config.redis !== undefined
        ? new RedisLimitCounterStore(shared.redis, config.redis.key_prefix)
        : new MemoryLimitCounterStore();
    metrics.approvalsPending(() => approvals.list().length);
    // OpenTelemetry traces, only when `telemetry.traces` is configured (read at start).
    let exportErrorLogged = 0;
    const tracesConfig = config.telemetry.traces;
    const tracing =
      tracesConfig === undefined
        ? undefined
        : createTracing(tracesConfig, {
            // At most one line a minute while the collector is unreachable.
            onExportError: (err) => {
              const now = clock();
              if (now - exportErrorLogged < 60_000) return;
              exportErrorLogged = now;
              logger.warn(
                { err: errorSummary(err) },
                'exporting traces to telemetry.traces.otlp_endpoint failed; spans are dropped',
              );
            },
          });
    const pipeline = createPipeline({
      publicUrl,
      audience: publicUrl,
      issuer: config.authority.issuer,
      maxBodyBytes: config.proxy.max_body,
      signatureSkewSeconds: Math.ceil(config.proxy.signature_skew / 1000),
      leaseSkewSeconds: Math.ceil(config.authority.clock_skew / 1000),
      minSecretLength: config.scrub.min_secret_length,
      services,
      authority,
      policy: () => policy,
      replay,
      audit: metrics.instrumentAudit(audit),
      vault,
      logger,
      clock,
      notBefore,
      observer: config.log.access
        ? combineObservers(metrics.observer, accessLog(logger))
        : metrics.observer,
      limits: createLimiter({
        rules: () => current.limits,
        store: limitStore,
        clock,
        onRefused: (limit, kind) => metrics.limitRefused(limit, kind),
      }),
      approvals,
      tracing,
    });
    const authorityHandler = createAuthorityHandler({
      authority,
      replay,
      publicUrl,
      issuer: config.authority.issuer,
      signatureSkewSeconds: Math.ceil(config.proxy.signature_skew / 1000),
      leaseSkewSeconds: Math.ceil(config.authority.clock_skew / 1000),
      clock,
      logger,
      notBefore,
      maxBodyBytes: config.proxy.max_body,
      reach: (agent, roles) =>
        reachableServices(current.services, (s) => policy.rulesFor(s), agent, roles),
      passthrough: createPassthroughDecider({
        rules: () => current.passthrough,
        agentRoles: (agent) => authority.agent(agent)?.roles,
        audit,
        clock,
      }),
    });

    const proxyServer = createServer(
      {
        maxHeaderSize: config.proxy.max_header_size,
        requestTimeout: 60_000,
        headersTimeout: 10_000,
        // Node's own check answers a bare 400; lacksHost below answers a problem.
        requireHostHeader: false,
      },
      (req, res) => {
        if (lacksHost(req)) return refuseNoHost(res);
        const path = req.url ?? '';
        const handler =
          path.startsWith('/.well-known/') || path === '/v1' || path.startsWith('/v1/')
            ? authorityHandler
            : pipeline;
        handler(req, res).catch((err: unknown) => {
          logger.error({ err: errorSummary(err) }, 'unhandled proxy error');
          sendProblem(res, new NexusError('internal_error'), randomId(12), true);
        });
      },
    );
    proxyServer.keepAliveTimeout = 65_000;
    proxyServer.on('clientError', answerClientError);
    // WebSocket upgrades (proxy/websocket.ts): the handshake goes through the same pipeline;
    // a refusal is a problem+json on the socket. The Authority's routes answer as usual.
    const websockets = createWebSocketRelays();
    proxyServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      const res = upgradeResponse(req, socket);
      if (lacksHost(req)) return refuseNoHost(res);
      const path = req.url ?? '';
      const handled =
        path.startsWith('/.well-known/') || path === '/v1' || path.startsWith('/v1/')
          ? authorityHandler(req, res)
          : // Another protocol (`Upgrade: h2c`...) is served as a plain request, as before.
            pipeline(
              req,
              res,
              isWebSocketUpgrade(req) ? websockets.relay(socket, head) : undefined,
            );
      handled.catch((err: unknown) => {
        logger.error({ err: errorSummary(err) }, 'unhandled proxy error');
        sendProblem(res, new NexusError('internal_error'), randomId(12), true);
      });
    });

    const connections = new Map<string, OAuthConnections>();
    for (const s of services.values()) {
      const c = connectionsOf(s.mechanic);
      if (c !== undefined) connections.set(s.name, c);
    }
    // Workers: GET /v1/status answers for the node, every worker's figures gathered by the
    // primary (app/worker-status.ts).
    const localStatus = () =>
      nodeStatus({
        config: () => current,
        startedAt,
        clock,
        proxyUrl: () => proxyBase,
        adminUrl: () => adminBase,
        policyHash: () => policy.hash,
        authority,
        vault,
        store,
        auditBacklog: () => metrics.auditBacklog(),
        approvalsPending: () => approvals.list().length,
      });
    // Workers: the primary's person tokens, so every worker knows a console login's token.
    const people = worker === undefined ? new PersonTokens() : workerPersonTokens();
    const admin = createAdminHandler({
      people,
      limits: () =>
        limitsView({
          rules: current.limits,
          store: limitStore,
          agents: authority.listAgents(),
          services: Object.entries(current.services).map(([name, s]) => ({
            name,
            ...(s.auth.credential === undefined ? {} : { credential: s.auth.credential }),
          })),
          now: clock(),
        }),
      // Not instrumented: the append histogram's `kind` is request or outcome.
      audit,
      connections,
      store,
      authority,
      vault,
      services: () =>
        Object.values(current.services).map((s) => ({
          name: s.name,
          kind: s.kind,
          upstream: s.upstream,
          auth_type: s.auth.type,
          credential: s.auth.credential,
        })),
      explain: (input) => {
        const agent = authority.agent(input.agent);
        return explanationJson(
          policy.explain({
            ...input,
            roles: input.roles ?? [...(agent?.roles ?? [])],
          }),
        );
      },
      policyHash: () => policy.hash,
      auditVerify: () => verifyAuditLog(store),
      // Key file: a new master key version is generated and written to the file before
      // anything is re-wrapped with it. NEXUS_MASTER_KEY: the operator puts the new version
      // first in the variable and restarts; rotation then re-wraps everything with it.
      rotateMasterKey: () =>
        vault.rotateMasterKey(
          config.master_key.source === 'file' ? generateMasterKey() : undefined,
        ),
      // `nexus reload` and POST /v1/config/reload reach every node of a cluster.
      reload: async () => {
        const local = await reload();
        if (sync === undefined) return local;
        const { reached, reports } = await sync.publishReload();
        return { ...local, node: sync.nodeId, cluster: { other_nodes: reached, reports } };
      },
      addService: (input) => addService(input),
      rotateSigningKey: async () => {
        const key = await authority.keys.rotate(
          config.authority.signing_alg,
          config.authority.lease_ttl,
        );
        await authority.keysChanged();
        return { kid: key.kid };
      },
      clock,
      logger,
      approvals: approvalBoard,
      approvalWebhook: (req, res, id) => webhooks.callback(req, res, id),
      status: worker === undefined ? localStatus : shareWorkerStatus(worker.id, localStatus, clock),
      metrics: config.admin.metrics.enabled
        ? { metrics, auth: config.admin.metrics.auth, scrapeToken }
        : undefined,
    });
    // The web console shares the admin listener and calls the admin API back through it.
    const oidcConfig = config.admin.console.oidc;
    const webConsole = createConsoleHandler({
      store,
      // Workers: one session table, the primary's (app/worker-sessions.ts).
      ...(worker === undefined ? {} : { sessionTable: workerSessionTable() }),
      adminUrl: () => adminBase,
      clock,
      logger,
      people,
      oidc:
        oidcConfig === undefined
          ? undefined
          : new ConsoleOidc(
              oidcConfig,
              async (name) => {
                const secret = (await vault.resolve(name)).fields['client_secret'];
                if (secret === undefined)
                  throw new NexusError(
                    'credential_unavailable',
                    `credential "${name}" has no field client_secret`,
                  );
                return secret;
              },
              clock,
              // Workers: the callback may reach another worker than the login's start.
              worker === undefined ? undefined : workerOidcFlows(),
            ),
    });
    const adminServer = createServer({ requireHostHeader: false }, (req, res) => {
      if (lacksHost(req)) return refuseNoHost(res);
      const handler = isConsolePath((req.url ?? '/').split('?')[0] ?? '/') ? webConsole : admin;
      handler(req, res).catch((err: unknown) => {
        logger.error({ err: errorSummary(err) }, 'unhandled admin error');
        sendProblem(res, new NexusError('internal_error'), randomId(12), true);
      });
    });
    adminServer.on('clientError', answerClientError);

    const bind = async (server: Server, setting: string, host: string, port: number) => {
      try {
        return await listen(server, host, port);
      } catch (err) {
        throw listenError(err, setting, { host, port });
      }
    };
    const proxyAddr = await bind(
      proxyServer,
      'proxy.listen',
      config.proxy.listen.host,
      options.proxyPort ?? config.proxy.listen.port,
    );
    let adminAddr: AddressInfo;
    try {
      adminAddr = await bind(
        adminServer,
        'admin.listen',
        config.admin.listen.host,
        options.adminPort ?? config.admin.listen.port,
      );
    } catch (err) {
      // The proxy listener is up already: closed, so the process can exit with the error.
      proxyServer.close();
      throw err;
    }
    const proxyUrl = urlOf(proxyAddr);
    const adminUrl = urlOf(adminAddr);
    adminBase = adminUrl;
    proxyBase = proxyUrl;
    logger.info({ proxy: proxyUrl, admin: adminUrl, policy_hash: policy.hash }, 'nexus listening');

    let closing: Promise<void> | undefined;
    // scrub.min_secret_length is read once at start: a change is reported, not applied.
    const RELOADABLE = new Set([
      'services',
      'agents',
      'policies',
      'limits',
      'passthrough',
      'base_dir',
      'master_key',
    ]);
    async function reload(): Promise<ReloadResult> {
      if (options.reloadConfig === undefined)
        throw new NexusError('internal_error', 'reload not available');
      const next = await options.reloadConfig();
      const changes = diffConfig(current, next);
      const nextPolicy = compilePolicy(next);
      const restartRequired = Object.keys(next).filter(
        (k) =>
          !RELOADABLE.has(k) &&
          JSON.stringify((next as unknown as Record<string, unknown>)[k]) !==
            JSON.stringify((current as unknown as Record<string, unknown>)[k]),
      );
      const fresh = new Map<string, ServiceRuntime>();
      const freshPools: Dispatcher[] = [];
      buildServices(next, fresh, freshPools);
      await authority.syncConfigAgents(next.agents);
      await warnMissingCredentials(next);
      const old = [...services.values()];
      // Swap: the next request sees the new services and policy.
      services.clear();
      for (const [k, v] of fresh) services.set(k, v);
      pools = freshPools;
      policy = nextPolicy;
      current = next;
      connections.clear();
      for (const svc of services.values()) {
        const c = connectionsOf(svc.mechanic);
        if (c !== undefined) connections.set(svc.name, c);
      }
      // Replaced runtimes close once their in-flight requests are done.
      for (const svc of old) retirers.get(svc)?.();
      logger.info(
        { services: services.size, policy_hash: policy.hash, restart_required: restartRequired },
        'configuration reloaded',
      );
      return {
        services: services.size,
        agents: Object.keys(next.agents).length,
        policy_hash: policy.hash,
        restart_required: restartRequired,
        changes,
      };
    }

    /** Writes a service from a preset into nexus.yaml and reloads; undone if the reload fails. */
    async function addService(input: AddServiceInput): Promise<unknown> {
      const file = options.configFile;
      if (file === undefined || options.reloadConfig === undefined)
        throw new NexusError('method_not_allowed', 'this node does not know its config file');
      const preset = getPreset(input.preset);
      if (preset === undefined) throw new NexusError('not_found', 'no such preset');
      const entry = renderPresetService(preset, {
        credential: input.credential ?? input.name,
        upstream: input.upstream,
        vars: input.vars,
      });
      const before = await readFile(file, 'utf8');
      await writeFile(file, addServiceToConfigText(before, input.name, entry));
      try {
        await reload();
      } catch (err) {
        // MUST: a file the node cannot load is not left behind.
        await writeFile(file, before);
        throw err;
      }
      return {
        service: input.name,
        preset: preset.id,
        entry,
        credential: input.credential ?? input.name,
        credential_fields: preset.fields.map((f) => f.name),
      };
    }
    return {
      proxyUrl,
      adminUrl,
      store,
      vault,
      authority,
      audit,
      metrics,
      reload,
      close() {
        closing ??= (async () => {
          // Held requests end now (approval_timeout), so the drain does not wait for them.
          approvals.close();
          // Open WebSocket streams end (1001) and hand over their outcome records.
          const streamsClosed = websockets.closeAll();
          const drained = Promise.all([
            new Promise<void>((r) => proxyServer.close(() => r())),
            new Promise<void>((r) => adminServer.close(() => r())),
          ]);
          // Keep-alive connections become idle as their last response ends: close them as
          // they do, so the drain ends with the last in-flight request.
          const idle = setInterval(() => {
            proxyServer.closeIdleConnections();
            adminServer.closeIdleConnections();
          }, 50);
          proxyServer.closeIdleConnections();
          adminServer.closeIdleConnections();
          const timer = setTimeout(() => {
            proxyServer.closeAllConnections();
            adminServer.closeAllConnections();
          }, 10_000);
          await drained;
          await streamsClosed;
          clearTimeout(timer);
          clearInterval(idle);
          clearInterval(rotationTimer);
          await Promise.all(pools.map((p) => p.close()));
          // The last requests' spans go to the collector; a collector that is down does not
          // hold the stop up for more than 2 s.
          if (tracing !== undefined) {
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([
              tracing.shutdown().catch(() => undefined),
              new Promise<void>((r) => (timer = setTimeout(r, 2000))),
            ]);
            clearTimeout(timer);
          }
          await Promise.all(
            [...services.values()].map((s) => s.mechanic.close?.().catch(() => undefined)),
          );
          // Outcome records of the last requests are appended before the final checkpoint.
          await new Promise((r) => setImmediate(r));
          try {
            await audit.close();
            if (shared?.replay === undefined && worker === undefined)
              await saveReplayState(store, memoryReplay);
          } finally {
            // Even when the store failed (e.g. its file was replaced): release it and the
            // node lock, so the next node can start.
            await appender?.terminate();
            await clusterApprovals?.close();
            await sync?.close();
            await shared?.close();
            await store.close();
            lock?.release();
          }
          logger.info('nexus stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await appender?.terminate();
    await clusterApprovals?.close();
    await sync?.close();
    await shared?.close();
    await store.close();
    lock?.release();
    throw err;
  }
}
