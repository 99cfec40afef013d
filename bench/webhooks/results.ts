import type { CpuSplit } from './cpu-split.js';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! : NaN;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted.length ? sorted[sorted.length - 1]! : NaN };
}

/** One measured run: a scenario, or the baseline. */
export interface Row {
  scenario: string;
  deliveries: number;
  seconds: number;
  perSecond: number;
  /** Only when compared with something else than the baseline (which is applied in the table). */
  ratio?: number;
  ratioLabel?: string;
  lag?: Percentiles;
  cpu?: CpuSplit;
  pg?: { writes: number; walBytes: number; eventInserts: number; settleMs: number };
  ok: boolean;
  notes: string[];
}

/** Every row of the run in order, for the closing table and BENCH_JSON. */
export const rows: Row[] = [];
/** Why the run fails, if it does: printed last, and the exit code is then 1. */
export const failures: string[] = [];
