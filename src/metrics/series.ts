import type { Registry } from 'prom-client';

/**
 * Counters and histograms whose per-request cost is a few additions on plain numbers.
 *
 * prom-client's own Counter#inc and Histogram#observe validate and hash the label set on every
 * call: measured here at 1.1–3 µs each, and a request touches five of them (route counter, route
 * histogram, ingest histogram, cache counter, auth histogram): 6–10 µs against a request budget of
 * ~28 µs at 35k requests/s per process. These series keep the same data in preallocated slots and
 * hand prom-client the usual JSON only when scraped, so its registry, aggregation over processes
 * and text format are unchanged.
 *
 * Label values are fixed when a series is created (at setup, or once per new route/status).
 */
type Labels = Record<string, string>;
interface SampleValue {
  value: number;
  labels: Labels | Record<string, string | number>;
  metricName?: string;
}

abstract class Series<S> {
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, { labels: Labels; slot: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  protected abstract newSlot(): S;
  protected abstract values(labels: Labels, slot: S, out: SampleValue[]): void;
  abstract reset(): void;

  /** The slot for these label values; call at setup (or cache the result), not per request. */
  child(labels: Labels = {}): S {
    const key = JSON.stringify(labels);
    let entry = this.series.get(key);
    if (entry === undefined) {
      entry = { labels, slot: this.newSlot() };
      this.series.set(key, entry);
    }
    return entry.slot;
  }

  /** prom-client's metric interface: what the registry reads at scrape time. */
  get() {
    const values: SampleValue[] = [];
    for (const { labels, slot } of this.series.values()) this.values(labels, slot, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export class CounterSlot {
  value = 0;
  inc(amount = 1): void {
    this.value += amount;
  }
}

export class FastCounter extends Series<CounterSlot> {
  constructor(name: string, help: string, registry: Registry) {
    super(name, help, 'counter', registry);
  }

  protected newSlot(): CounterSlot {
    return new CounterSlot();
  }

  protected values(labels: Labels, slot: CounterSlot, out: SampleValue[]): void {
    out.push({ value: slot.value, labels });
  }

  reset(): void {
    for (const { slot } of this.series.values()) slot.value = 0;
  }
}

export class HistogramSlot {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class FastHistogram extends Series<HistogramSlot> {
  constructor(
    name: string,
    help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    super(name, help, 'histogram', registry);
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new Error(`${name}: buckets must increase`);
    }
  }

  protected newSlot(): HistogramSlot {
    return new HistogramSlot(this.bounds);
  }

  protected values(labels: Labels, slot: HistogramSlot, out: SampleValue[]): void {
    const bucketName = this.name + '_bucket';
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += slot.counts[i]!;
      out.push({ value: cumulative, labels: { ...labels, le: this.bounds[i]! }, metricName: bucketName });
    }
    out.push({ value: slot.count, labels: { ...labels, le: '+Inf' }, metricName: bucketName });
    out.push({ value: slot.sum, labels, metricName: this.name + '_sum' });
    out.push({ value: slot.count, labels, metricName: this.name + '_count' });
  }

  reset(): void {
    for (const { slot } of this.series.values()) {
      slot.counts.fill(0);
      slot.sum = 0;
      slot.count = 0;
    }
  }
}
