/**
 * `/metrics` of `nexus up --workers N`: one scrape shows the whole process group. The
 * worker that serves the scrape asks its primary over IPC; the primary gathers every
 * worker's registry with prom-client's `AggregatorRegistry` (counters and histograms
 * summed, gauges as prom-client aggregates them: summed unless the metric says otherwise)
 * and answers the asking worker with the text exposition.
 *
 * Asks (ipc-peer.ts, topic `metrics.scrape`), answered with the exposition text; between
 * the primary and the workers, prom-client's own request and answer messages
 * (`prom-client:getMetricsReq/Res`).
 */
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';
import { NexusError } from '@nexus-proxy/protocol';
import { primaryPeer, type IpcPeer } from './ipc-peer.js';

const TOPIC = 'metrics.scrape';

let aggregator: AggregatorRegistry<PrometheusContentType> | undefined;

/**
 * In the primary: answers a worker's scrape with every worker's metrics, aggregated.
 * A worker that does not answer within prom-client's 5 s fails the scrape (the asking
 * worker answers 500), rather than leaving its counts out silently.
 */
export function answerMetricsScrape(peer: IpcPeer): void {
  peer.handle(TOPIC, async () => {
    aggregator ??= new AggregatorRegistry<PrometheusContentType>();
    try {
      return await aggregator.clusterMetrics();
    } catch (error) {
      throw new NexusError(
        'internal_error',
        `the workers' metrics could not be gathered: ${(error as Error).message}`,
      );
    }
  });
}

/**
 * In a worker: offers `registry` to the primary's aggregation and returns the scrape
 * of the whole group (through the primary).
 *
 * @throws NexusError `internal_error` when the primary or a worker does not answer.
 */
export function shareWorkerMetrics(registry: Registry): () => Promise<string> {
  const peer = primaryPeer();
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's answer to the primary's requests.
  new AggregatorRegistry<PrometheusContentType>();
  return () => peer.ask<string>(TOPIC, null, 10_000);
}
