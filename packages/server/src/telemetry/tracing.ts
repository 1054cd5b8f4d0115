/**
 * OpenTelemetry traces of proxied requests (issue 15), exported over OTLP/HTTP (JSON) with
 * the official SDK (`@opentelemetry/sdk-trace-base`, `@opentelemetry/exporter-trace-otlp-http`),
 * without auto-instrumentation: the pipeline tells a {@link RequestSpan} what happened.
 *
 * One trace per request: a server span `nexus.request` and a child span per pipeline stage
 * (`nexus.verify`, `nexus.limits`, `nexus.policy`, `nexus.approval`, `nexus.inject`,
 * `nexus.audit`, `nexus.upstream`, `nexus.relay`), timed by the same laps as the metrics.
 * The upstream gets a W3C `traceparent` naming this trace and the request span.
 *
 * The agent's own `traceparent` is agent-controlled input (and not covered by the request
 * signature). Nexus MUST NOT continue it: an agent could otherwise choose Nexus's trace ids
 * (and collide with or pollute other traces) and force sampling (its `sampled` flag) to
 * flood the collector. Nexus starts a new trace every time, samples by its own ratio, and
 * records a syntactically valid agent `traceparent` as a span *link* only, so the agent's
 * trace and Nexus's can still be joined in the tracing backend. The agent's `traceparent`
 * and `tracestate` are replaced and removed before forwarding.
 *
 * MUST: no span attribute holds a credential, a header value, the query, the body or the
 * intent: only configured names (service), the verified agent's name, the method, the
 * normalised path without query, the request id, status codes, byte counts and stable
 * error codes (as in the access log).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Context,
  type Link,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { PipelineStage, RequestSummary } from '../proxy/observe.js';
import type { TracesConfig } from './schema.js';

/** The spans of one request, as the pipeline drives them. */
export interface RequestSpan {
  /** A stage ended now after `seconds` (the pipeline's lap): its child span. */
  stage(stage: PipelineStage, seconds: number): void;
  /**
   * Sets `traceparent` on the outbound headers to this trace and the request span, and
   * removes the agent's `tracestate` (lower-case header names).
   */
  propagate(headers: Record<string, string>): void;
  /** The request is done: ends the request span with its outcome. */
  end(summary: RequestSummary): void;
}

/** The node's tracer. */
export interface Tracing {
  /** Starts the spans of a request that arrived with `headers`. */
  start(method: string, headers: IncomingHttpHeaders): RequestSpan;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** Where spans go; default: OTLP/HTTP JSON to `config.otlp_endpoint`. */
  readonly exporter?: SpanExporter;
  /** Told when an export fails (the collector is down); never with span content. */
  readonly onExportError?: (err: unknown) => void;
}

const propagator = new W3CTraceContextPropagator();

/** Epoch milliseconds from the monotonic clock the stage laps use. */
const nowMs = () => performance.timeOrigin + performance.now();

/** The agent's `traceparent` as a link, when it is one valid header. */
function agentLink(headers: IncomingHttpHeaders): Link | undefined {
  const value = headers.traceparent;
  if (typeof value !== 'string') return undefined;
  const ctx = propagator.extract(ROOT_CONTEXT, { traceparent: value }, defaultTextMapGetter);
  const linked = trace.getSpanContext(ctx);
  if (linked === undefined) return undefined;
  // The link carries ids only: the agent's tracestate is not read.
  return {
    context: { traceId: linked.traceId, spanId: linked.spanId, traceFlags: linked.traceFlags },
    attributes: { 'nexus.link': 'agent_traceparent' },
  };
}

class PipelineSpan implements RequestSpan {
  readonly #tracer: Tracer;
  readonly #root: Span;
  readonly #ctx: Context;

  constructor(tracer: Tracer, method: string, headers: IncomingHttpHeaders) {
    this.#tracer = tracer;
    this.#root = tracer.startSpan(
      'nexus.request',
      {
        kind: SpanKind.SERVER,
        startTime: nowMs(),
        attributes: { 'http.request.method': method },
      },
      ROOT_CONTEXT,
    );
    // Read only for a span that is recorded: an unsampled request does not parse it.
    if (this.#root.isRecording()) {
      const link = agentLink(headers);
      if (link !== undefined) this.#root.addLink(link);
    }
    this.#ctx = trace.setSpan(ROOT_CONTEXT, this.#root);
  }

  stage(stage: PipelineStage, seconds: number): void {
    if (!this.#root.isRecording()) return;
    const end = nowMs();
    this.#tracer
      .startSpan(
        `nexus.${stage}`,
        {
          kind: stage === 'upstream' ? SpanKind.CLIENT : SpanKind.INTERNAL,
          startTime: end - seconds * 1000,
          attributes: { 'nexus.stage': stage },
        },
        this.#ctx,
      )
      .end(end);
  }

  propagate(headers: Record<string, string>): void {
    delete headers.traceparent;
    delete headers.tracestate;
    propagator.inject(this.#ctx, headers, defaultTextMapSetter);
  }

  end(s: RequestSummary): void {
    const root = this.#root;
    if (root.isRecording()) {
      root.updateName(s.service === undefined ? 'nexus.request' : `nexus.request ${s.service}`);
      root.setAttributes({
        'nexus.request_id': s.requestId,
        'http.response.status_code': s.status,
        'nexus.decision': s.decision,
        'nexus.code': s.code,
        'nexus.bytes_in': s.bytesIn,
        'nexus.bytes_out': s.bytesOut,
        'nexus.redactions': s.redactions,
        ...(s.service === undefined ? {} : { 'nexus.service': s.service }),
        ...(s.agent === undefined ? {} : { 'nexus.agent': s.agent }),
        ...(s.path === undefined ? {} : { 'url.path': s.path }),
        ...(s.upstreamStatus === undefined ? {} : { 'nexus.upstream_status': s.upstreamStatus }),
      });
      if (s.code !== 'ok') root.setStatus({ code: SpanStatusCode.ERROR, message: s.code });
    }
    root.end(nowMs());
  }
}

/**
 * Builds the tracer of `telemetry.traces`. Spans are batched (at most 2048 queued, dropped
 * beyond: tracing never holds up or grows with the proxy) and exported every second.
 */
export function createTracing(config: TracesConfig, options: TracingOptions = {}): Tracing {
  const exporter =
    options.exporter ?? new OTLPTraceExporter({ url: config.otlp_endpoint, timeoutMillis: 10_000 });
  const onError = options.onExportError;
  const reporting: SpanExporter =
    onError === undefined
      ? exporter
      : {
          export: (spans, done) =>
            exporter.export(spans, (result) => {
              if (result.code !== 0) onError(result.error);
              done(result);
            }),
          shutdown: () => exporter.shutdown(),
          forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
        };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.service_name }),
    sampler: new TraceIdRatioBasedSampler(config.sample_ratio),
    spanProcessors: [
      new BatchSpanProcessor(reporting, {
        scheduledDelayMillis: 1000,
        maxQueueSize: 2048,
        maxExportBatchSize: 512,
        exportTimeoutMillis: 10_000,
      }),
    ],
  });
  const tracer = provider.getTracer('nexus');
  return {
    start: (method, headers) => new PipelineSpan(tracer, method, headers),
    shutdown: () => provider.shutdown(),
  };
}
