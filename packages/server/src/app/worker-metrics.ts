/**
 * `/metrics` of `nexus up --workers N`: one scrape shows the whole process group. The
 * worker that serves the scrape asks its primary over IPC; the primary gathers every
 * worker's registry with prom-client's `AggregatorRegistry` (counters and histograms
 * summed, gauges as prom-client aggregates them: summed unless the metric says otherwise)
 * and answers the asking worker with the text exposition.
 *
 * Protocol: worker -> primary `{ nexusMetricsScrape: id }`; primary -> worker
 * `{ nexusMetricsScraped: { id, body } | { id, error } }`; between them prom-client's own
 * request and answer messages (`prom-client:getMetricsReq/Res`).
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';
import { NexusError } from '@nexus-proxy/protocol';

interface ScrapeRequest {
  nexusMetricsScrape: number;
}
interface ScrapeAnswer {
  nexusMetricsScraped: { id: number; body?: string; error?: string };
}

/** A worker's message asking for the group's metrics. */
export function isMetricsScrape(message: unknown): message is ScrapeRequest {
  return typeof (message as Partial<ScrapeRequest> | null)?.nexusMetricsScrape === 'number';
}

function isMetricsAnswer(message: unknown): message is ScrapeAnswer {
  const a = (message as Partial<ScrapeAnswer> | null)?.nexusMetricsScraped;
  return typeof a === 'object' && a !== null && typeof a.id === 'number';
}

let aggregator: AggregatorRegistry<PrometheusContentType> | undefined;

/**
 * In the primary: answers a worker's scrape with every worker's metrics, aggregated.
 * A worker that does not answer within prom-client's 5 s fails the scrape (the asking
 * worker answers 500), rather than leaving its counts out silently.
 */
export function answerMetricsScrape(worker: Worker, message: ScrapeRequest): void {
  aggregator ??= new AggregatorRegistry<PrometheusContentType>();
  const id = message.nexusMetricsScrape;
  aggregator.clusterMetrics().then(
    (body: string) => {
      if (worker.isConnected()) worker.send({ nexusMetricsScraped: { id, body } });
    },
    (error: unknown) => {
      if (worker.isConnected()) {
        worker.send({ nexusMetricsScraped: { id, error: (error as Error).message } });
      }
    },
  );
}

/**
 * In a worker: offers `registry` to the primary's aggregation and returns the scrape
 * of the whole group (through the primary).
 *
 * @throws NexusError `internal_error` when the primary or a worker does not answer.
 */
export function shareWorkerMetrics(registry: Registry): () => Promise<string> {
  if (!cluster.isWorker || process.send === undefined) {
    throw new Error('shareWorkerMetrics runs in a worker of nexus up --workers');
  }
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's answer to the primary's requests.
  new AggregatorRegistry<PrometheusContentType>();
  let next = 1;
  const waiting = new Map<
    number,
    { resolve: (body: string) => void; reject: (e: Error) => void }
  >();
  process.on('message', (message: unknown) => {
    if (!isMetricsAnswer(message)) return;
    const { id, body, error } = message.nexusMetricsScraped;
    const w = waiting.get(id);
    if (w === undefined) return;
    waiting.delete(id);
    if (body !== undefined) w.resolve(body);
    else
      w.reject(
        new NexusError('internal_error', `the workers' metrics could not be gathered: ${error}`),
      );
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new NexusError('internal_error', "the workers' metrics could not be gathered"));
      }, 10_000);
      timer.unref();
      waiting.set(id, {
        resolve: (body) => {
          clearTimeout(timer);
          resolve(body);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      process.send!({ nexusMetricsScrape: id });
    });
}
