/**
 * A Prometheus histogram for the per-request hot path (issue 14): a series is looked up once
 * by its label values and an observation is a bucket search and three additions. prom-client's
 * `Histogram.observe` validated the labels and hashed them on every call, ~9 times per
 * request (one per stage, the request, the audit appends).
 *
 * The exposition is prom-client's own: the registry formats the values this metric hands it
 * exactly as it formats a prom-client `Histogram` (same series order, label order, bucket
 * lines, `+Inf`, `_sum`, `_count`); metrics/histogram.test.ts compares the two texts.
 */
import type { Registry } from 'prom-client';

/** One label set's observations. */
export interface HistogramSeries {
  /** Records one value (seconds). */
  observe(value: number): void;
}

interface Series extends HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly counts: number[];
  sum: number;
  count: number;
}

/** The value entries prom-client's registry formats (its `MetricValue` with `metricName`). */
interface ExportValue {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
  exemplar?: null;
}

export interface LabelledHistogramOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  /** In the order the exposition lists them (prom-client: the order of the labels object). */
  readonly labelNames: readonly L[];
  /** Upper bounds, ascending. */
  readonly buckets: readonly number[];
  readonly registers: readonly Registry[];
}

/** A histogram registered with prom-client registries, observed through cached series. */
export class LabelledHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  /** By label values joined with NUL; in the order of their first observation. */
  #series = new Map<string, Series>();

  constructor(options: LabelledHistogramOptions<L>) {
    this.name = options.name;
    this.help = options.help;
    this.#labelNames = options.labelNames;
    this.#bounds = [...options.buckets];
    for (const r of options.registers) r.registerMetric(this as never);
  }

  /**
   * The series of `labels` (one value per label name). Created with its first observation,
   * as prom-client does: observe it right away.
   */
  series(labels: Readonly<Record<L, string>>): HistogramSeries {
    let key = '';
    for (const n of this.#labelNames) key += `${labels[n]}\0`;
    let s = this.#series.get(key);
    if (s === undefined) {
      const own: Record<string, string> = {};
      for (const n of this.#labelNames) own[n] = labels[n];
      s = this.#newSeries(own);
      this.#series.set(key, s);
    }
    return s;
  }

  /** `series(labels).observe(value)`. */
  observe(labels: Readonly<Record<L, string>>, value: number): void {
    this.series(labels).observe(value);
  }

  #newSeries(labels: Record<string, string>): Series {
    const bounds = this.#bounds;
    const s: Series = {
      labels,
      counts: bounds.map(() => 0),
      sum: 0,
      count: 0,
      observe(value: number) {
        if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
        s.sum += value;
        s.count += 1;
        // prom-client: the first bound at or above the value; none: only +Inf counts it.
        for (let i = 0; i < bounds.length; i++) {
          if (value <= (bounds[i] as number)) {
            (s.counts[i] as number)++;
            break;
          }
        }
      },
    };
    return s;
  }

  /** Drops every series (prom-client's `reset`, `Registry.resetMetrics`). */
  reset(): void {
    this.#series = new Map();
  }

  /** The metric as prom-client's registry reads it. */
  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    values: ExportValue[];
    aggregator: 'sum';
  }> {
    const values: ExportValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push({
          labels: { le: this.#bounds[i] as number },
          sharedLabels: s.labels,
          value: acc,
          metricName: bucket,
          exemplar: null,
        });
      }
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
