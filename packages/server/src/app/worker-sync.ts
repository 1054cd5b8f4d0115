/**
 * Change fan-out between the workers of one node (`nexus up --workers N`): the
 * {@link ClusterSync} interface of `cluster-sync.ts` over `node:cluster` IPC, relayed by
 * the primary process (no Redis, no PostgreSQL).
 *
 * - A worker that changed agents, revocations or keys (committed to the shared SQLite
 *   store first) sends `change`; the primary relays it to every other worker, which
 *   re-reads them from the store (`Authority.refresh`).
 * - A worker that reloaded its config sends `reload <id>`; every other worker re-reads the
 *   config file and answers `report <id> <json>` through the primary; the first worker
 *   gathers the reports for a few seconds (as the cluster reload does).
 * - A worker (re)started after a change re-reads everything from the store at start, so it
 *   misses nothing; IPC between a primary and its live workers is not lossy.
 */
import {
  deliverReport,
  type ClusterReloadOutcome,
  type ClusterSync,
  type ReloadReport,
} from './cluster-sync.js';
import { errorSummary } from '../proxy/pipeline.js';
import type { Logger } from '../util/logger.js';
import { randomId } from '../util/ids.js';

/** The IPC message of the fan-out (both directions). */
export interface WorkerSyncMessage {
  readonly nexusSync: string;
  /** The sending worker's id (set by the worker, relayed unchanged). */
  readonly from: string;
}

/** Tells whether `message` is a fan-out message. */
export function isWorkerSyncMessage(message: unknown): message is WorkerSyncMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    typeof (message as { nexusSync?: unknown }).nexusSync === 'string' &&
    typeof (message as { from?: unknown }).from === 'string'
  );
}

/**
 * The worker side. `nodeId` names the worker in reload reports (`<node>/<worker>`).
 */
export function startWorkerSync(options: {
  readonly nodeId: string;
  readonly refresh: () => Promise<void>;
  readonly reload?: () => Promise<Record<string, unknown>>;
  readonly logger: Logger;
  /** How many other workers a notice reaches. */
  readonly others: () => number;
}): ClusterSync {
  const { nodeId, logger } = options;
  const gathering = new Map<string, (report: ReloadReport) => void>();
  let closed = false;
  const send = (payload: string) => {
    if (closed || process.send === undefined || !process.connected) return;
    process.send({ nexusSync: payload, from: nodeId } satisfies WorkerSyncMessage);
  };
  const onMessage = (message: unknown) => {
    if (!isWorkerSyncMessage(message) || message.from === nodeId || closed) return;
    const payload = message.nexusSync;
    if (payload === 'change') {
      options
        .refresh()
        .catch((err: unknown) =>
          logger.warn({ err: errorSummary(err) }, 'worker refresh after a change failed'),
        );
    } else if (payload.startsWith('reload ')) {
      const id = payload.slice('reload '.length);
      if (options.reload === undefined) return;
      void options
        .reload()
        .then(
          (result): ReloadReport => ({ node: nodeId, ok: true, result }),
          (err: unknown): ReloadReport => {
            logger.warn({ err: errorSummary(err) }, 'reload sent by another worker failed');
            const code = (err as { code?: unknown }).code;
            return {
              node: nodeId,
              ok: false,
              code: typeof code === 'string' ? code : 'internal_error',
            };
          },
        )
        .then((report) => send(`report ${id} ${JSON.stringify(report)}`));
    } else if (payload.startsWith('report ')) {
      deliverReport(payload, gathering);
    }
  };
  process.on('message', onMessage);
  return {
    nodeId,
    publish() {
      send('change');
      return Promise.resolve();
    },
    async publishReload(waitMs = 5000): Promise<ClusterReloadOutcome> {
      const id = randomId(9);
      const reports: ReloadReport[] = [];
      let wake = () => undefined as void;
      gathering.set(id, (report) => {
        if (reports.some((r) => r.node === report.node)) return;
        reports.push(report);
        wake();
      });
      const reached = options.others();
      try {
        send(`reload ${id}`);
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
      } finally {
        gathering.delete(id);
      }
      return { reached, reports: [...reports] };
    },
    close() {
      closed = true;
      process.off('message', onMessage);
      return Promise.resolve();
    },
  };
}
