/**
 * Prometheus metrics of one node (prom-client), served on the admin listener at `/metrics`
 * (metrics/http.ts). Each node has its own registry, so several nodes in one process (tests)
 * do not share counters.
 *
 * MUST: label values are bounded and never agent-controlled or secret: `service` is a
 * configured service name or `unknown`, `code` a stable error code from the fixed table (or
 * `ok`), `decision` allow|deny, `stage` a pipeline stage, `limit` a configured limit id.
 * No path, intent, agent-supplied header or credential name is ever a label value.
 */
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LabelledHistogram } from './histogram.js';
import { ERROR_CODES } from '@nexus-proxy/protocol';
import type { AuditRecord } from '../audit/record.js';
import type { AuditAppender } from '../proxy/pipeline.js';
import type { NonceClaim } from '../audit/sink.js';
import type { PipelineObserver, PipelineStage, RequestSummary } from '../proxy/observe.js';

/** Buckets (seconds) for request and stage latencies: 0.5 ms .. 60 s. */
const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** The metrics of one node; `observer` feeds them from the proxy pipeline. */
export interface NexusMetrics {
  readonly registry: Registry;
  readonly observer: PipelineObserver;
  /** A token fetch of a mechanic (OAuth2, JWT bearer, GitHub App, token exchange). */
  tokenRefresh(service: string, ok: boolean): void;
  /** A request refused by a configured limit. */
  limitRefused(limit: string, kind: 'requests' | 'concurrent' | 'bytes' | 'cost'): void;
  /** The pipeline's audit appender, with append latency and the oldest pending append measured. */
  instrumentAudit(audit: AuditAppender): AuditAppender;
  /** Where `nexus_approvals_pending` reads the number of held requests. */
  approvalsPending(count: () => number): void;
  /** Audit records not yet durable, and the age of the oldest (for `nexus status`). */
  auditBacklog(): { pending: number; lagSeconds: number };
  /** The Prometheus text exposition of every metric. */
  render(): Promise<{ contentType: string; body: string }>;
}

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.keys(ERROR_CODES));

/** A code as a label value: one from the fixed table, `ok`, or `other`. */
function codeLabel(code: string): string {
  return code === 'ok' || KNOWN_CODES.has(code) ? code : 'other';
}

/**
 * Creates a node's registry and metrics.
 *
 * @param group for a worker of `nexus up --workers N`: makes the text of the whole process
 *   group's metrics from this registry and the other workers' (app/worker-metrics.ts);
 *   `render` serves it instead of this registry's alone.
 */
export function createMetrics(group?: (registry: Registry) => () => Promise<string>): NexusMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'nexus_' });
  const registers = [registry];
  const scrapeGroup = group?.(registry);

  const requests = new Counter({
    name: 'nexus_requests_total',
    help: 'Proxied requests by service, policy decision and outcome code (ok or an error code)',
    labelNames: ['service', 'decision', 'code'] as const,
    registers,
  });
  const duration = new LabelledHistogram({
    name: 'nexus_request_duration_seconds',
    help: 'Time from the first byte of a proxied request to the end of its response',
    labelNames: ['service', 'decision'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const stages = new LabelledHistogram({
    name: 'nexus_stage_duration_seconds',
    help: 'Time spent in each pipeline stage (verify, policy, limits, audit, upstream, relay)',
    labelNames: ['service', 'stage'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'nexus_upstream_errors_total',
    help: 'Forwarded requests that failed at the upstream (upstream_unreachable, upstream_timeout, upstream_invalid)',
    labelNames: ['service', 'code'] as const,
    registers,
  });
  const upstreamResponses = new Counter({
    name: 'nexus_upstream_responses_total',
    help: 'Upstream responses by service and status class (2xx, 3xx, 4xx, 5xx)',
    labelNames: ['service', 'class'] as const,
    registers,
  });
  const redactions = new Counter({
    name: 'nexus_redactions_total',
    help: 'Secret values redacted from upstream responses (headers and bodies)',
    labelNames: ['service'] as const,
    registers,
  });
  const costs = new Counter({
    name: 'nexus_cost_total',
    help: "Cost read from upstream responses (a service's cost:, e.g. LLM tokens)",
    labelNames: ['service'] as const,
    registers,
  });
  const tokenRefreshes = new Counter({
    name: 'nexus_token_refreshes_total',
    help: 'Token fetches by mechanics that derive tokens, by service and result (ok, error)',
    labelNames: ['service', 'result'] as const,
    registers,
  });
  const limitRefusals = new Counter({
    name: 'nexus_limit_refusals_total',
    help: 'Requests refused with rate_limited, by configured limit id and kind',
    labelNames: ['limit', 'kind'] as const,
    registers,
  });
  const auditAppend = new LabelledHistogram({
    name: 'nexus_audit_append_duration_seconds',
    help: 'Time until an audit record is durable (request and outcome records)',
    labelNames: ['kind'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  // Appends not yet durable: their start times, for the lag gauge.
  const pending = new Map<number, number>();
  let nextPending = 0;
  const lagSeconds = () => {
    let oldest = Infinity;
    for (const t of pending.values()) oldest = Math.min(oldest, t);
    return oldest === Infinity ? 0 : (performance.now() - oldest) / 1000;
  };
  new Gauge({
    name: 'nexus_audit_lag_seconds',
    help: 'Age of the oldest audit record not yet durable (0 when none is pending)',
    registers,
    collect() {
      this.set(lagSeconds());
    },
  });
  new Gauge({
    name: 'nexus_audit_pending_records',
    help: 'Audit records handed to the writer and not yet durable',
    registers,
    collect() {
      this.set(pending.size);
    },
  });

  let approvals: () => number = () => 0;
  new Gauge({
    name: 'nexus_approvals_pending',
    help: 'Requests held for an operator to approve (approve policy rules)',
    registers,
    collect() {
      this.set(approvals());
    },
  });

  const observer: PipelineObserver = {
    stage(service: string, stage: PipelineStage, seconds: number) {
      stages.observe({ service, stage }, seconds);
    },
    finished(s: RequestSummary) {
      const service = s.service ?? 'unknown';
      const code = codeLabel(s.code);
      requests.inc({ service, decision: s.decision, code });
      duration.observe({ service, decision: s.decision }, s.seconds);
      if (code.startsWith('upstream_')) upstreamErrors.inc({ service, code });
      if (s.upstreamStatus !== undefined && s.upstreamStatus >= 200 && s.upstreamStatus < 600) {
        upstreamResponses.inc({ service, class: `${Math.floor(s.upstreamStatus / 100)}xx` });
      }
      if (s.redactions > 0) redactions.inc({ service }, s.redactions);
      if (s.cost !== undefined && s.cost > 0) costs.inc({ service }, s.cost);
    },
  };

  return {
    registry,
    observer,
    tokenRefresh(service, ok) {
      tokenRefreshes.inc({ service, result: ok ? 'ok' : 'error' });
    },
    limitRefused(limit, kind) {
      limitRefusals.inc({ limit, kind });
    },
    instrumentAudit(audit: AuditAppender): AuditAppender {
      return {
        async append(record: AuditRecord, claim?: NonceClaim): Promise<unknown> {
          const id = nextPending++;
          const started = performance.now();
          pending.set(id, started);
          try {
            return await audit.append(record, claim);
          } finally {
            pending.delete(id);
            auditAppend.observe(
              { kind: record.kind === 'outcome' ? 'outcome' : 'request' },
              (performance.now() - started) / 1000,
            );
          }
        },
      };
    },
    approvalsPending(count) {
      approvals = count;
    },
    auditBacklog() {
      return { pending: pending.size, lagSeconds: lagSeconds() };
    },
    async render() {
      return {
        contentType: registry.contentType,
        body: await (scrapeGroup ?? (() => registry.metrics()))(),
      };
    },
  };
}
