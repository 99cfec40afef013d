/** The sizes of a run, read once at start; the environment overrides are listed in bench/webhooks.ts. */

// The concurrency of the baseline client: 64 requests in flight on 64 keep-alive connections,
// taken as what the delivery engine may use against one endpoint.
export const BASELINE_IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT || 64);
export const BASELINE_REQUESTS = 20_000;
export const BASELINE_WARMUP = 2_000;
export const BURST_EVENTS = Number(process.env.BENCH_BURST_EVENTS || 20_000);
export const FANOUT_ENDPOINTS = 12;
export const FANOUT_EVENTS = Number(process.env.BENCH_FANOUT_EVENTS || 3_000);
export const ISOLATION_EVENTS = Number(process.env.BENCH_ISOLATION_EVENTS || 30_000);
// Noisy neighbour: org A's hanging endpoints (each with NOISY_STUCK_EVENTS events to send, far
// more sends than the process's 1 024 slots) beside org B's healthy one, NOISY_EVENTS events.
export const NOISY_ENDPOINTS = Number(process.env.BENCH_NOISY_ENDPOINTS || 1_000);
export const NOISY_STUCK_EVENTS = 20;
export const NOISY_EVENTS = Number(process.env.BENCH_NOISY_EVENTS || 40_000);
// Ordering "key": the same burst to an endpoint with ordering "key", events over KEYS_DISTINCT keys.
export const KEYS_EVENTS = Number(process.env.BENCH_KEYS_EVENTS || 20_000);
export const KEYS_DISTINCT = Number(process.env.BENCH_KEYS_DISTINCT || 1_000);
export const LATENCY_INTERVAL_MS = 25;
export const LATENCY_SECONDS = 8;
export const BATCH_SIZE = 100;
export const PRODUCERS = 4;
export const SCENARIO_TIMEOUT_MS = Number(process.env.BENCH_SCENARIO_TIMEOUT_MS || 90_000);
export const LATENCY_TIMEOUT_MS = 20_000;
// Everything, server boot and cleanup included: past this the run is abandoned (exit code 1).
export const RUN_DEADLINE_MS = 15 * 60_000;
export const SCENARIOS = (process.env.BENCH_SCENARIOS || 'burst,fanout,latency,isolation,noisy')
  .split(',')
  .map((s) => s.trim());
export const WEBHOOK_TIMEOUT_MS = 2_000;
