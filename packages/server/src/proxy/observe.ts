/**
 * What the pipeline tells an observer (metrics, the access log) about each request: the
 * time spent in each stage and one summary when the request is done. The pipeline calls
 * these hooks; it does not know about Prometheus or the log.
 *
 * MUST: a summary carries no secret, header value, body or intent. `service` is a
 * configured name (or undefined), `code` a stable error code; `agent` and `path` are the
 * verified agent and the normalised path (no query), for the access log only: metrics MUST
 * NOT use them as labels.
 */
import { performance } from 'node:perf_hooks';

/** The pipeline stages timed per request. */
export type PipelineStage =
  | 'verify' // route, lease, signature, body and digest, replay
  | 'policy'
  | 'limits'
  | 'approval' // held until an operator decided
  | 'inject' // the mechanic builds the outbound request (credential, derived token)
  | 'audit' // the request record made durable
  | 'upstream' // until the upstream's response head
  | 'relay'; // the scrubbed response body to the agent

/** One finished request, as the metrics see it. */
export interface RequestSummary {
  readonly requestId: string;
  readonly method: string;
  /** The verified agent, once the lease was verified. */
  readonly agent: string | undefined;
  /** The normalised path inside the service, without the query. */
  readonly path: string | undefined;
  /** The HTTP status sent to the agent. */
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The configured service name, or undefined when the route named none that exists. */
  readonly service: string | undefined;
  readonly decision: 'allow' | 'deny';
  /** `ok`, or the stable error code the request ended with. */
  readonly code: string;
  /** The upstream's status, when one answered. */
  readonly upstreamStatus: number | undefined;
  readonly redactions: number;
  readonly seconds: number;
  /** What the response cost (a service's `cost:`, limits/cost.ts), when one was read. */
  readonly cost?: number;
}

/** Receives per-request timings and outcomes (metrics/metrics.ts implements it). */
export interface PipelineObserver {
  stage(service: string, stage: PipelineStage, seconds: number): void;
  finished(summary: RequestSummary): void;
}

/** One observer that tells each of `observers` in turn. */
export function combineObservers(...observers: PipelineObserver[]): PipelineObserver {
  return {
    stage(service, stage, seconds) {
      for (const o of observers) o.stage(service, stage, seconds);
    },
    finished(summary) {
      for (const o of observers) o.finished(summary);
    },
  };
}

/** Laps of a monotonic clock, in seconds (Date.now is too coarse for stage timings). */
export class StageClock {
  readonly #start = performance.now();
  #last = this.#start;

  /** Seconds since the previous lap (or the start). */
  lap(): number {
    const now = performance.now();
    const s = (now - this.#last) / 1000;
    this.#last = now;
    return s;
  }

  /** Seconds since the start. */
  total(): number {
    return (performance.now() - this.#start) / 1000;
  }
}
