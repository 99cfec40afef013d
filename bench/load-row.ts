import type { CpuGroups } from './proc-stats.js';

/** One row of bench:load's table and JSON (bench/load.ts writes it, bench/compare-summary.ts reads it). */
export interface LoadRow {
  scenario: string;
  target: string;
  connections?: number;
  rps: number;
  events_per_s?: number;
  latency_ms: { p50: number; p90?: number; p95?: number; p99: number };
  errors: number;
  ratio?: number;
  baseline?: string;
  cpu_s?: CpuGroups;
  worker_rss_mb?: number[];
  rows_check?: string;
  extra?: Record<string, unknown>;
  /** CPU µs per request (bare uWS: its whole process tree) or per row (raw COPY: Postgres). */
  cpu_us_per_request?: number;
  cpu_us_per_row?: number;
  /** Full server: CPU µs per durable event, HTTP workers and Postgres, against the limit. */
  per_event?: PerEvent;
}

export interface PerEvent {
  http_us: number;
  postgres_us: number;
  total_us: number;
  limit_us: number;
  ratio_to_limit: number;
}
