-- Per-endpoint delivery stats by minute (API.md §5, GET /v1/webhooks/{id}/stats and
-- /v1/destinations/{id}/stats), pre-aggregated so that a chart's view reads at most one row per
-- minute of its window instead of scanning the attempt log.
-- The delivery process's progress writer (src/delivery/progress-writer.ts) adds each batch's
-- attempts here in the same transaction as their webhook_deliveries rows, one upsert per
-- (endpoint, minute) per batch, so the counts agree with the attempt log once committed.
-- `minute` is the start of the UTC minute in which an attempt started (its `at`).
--   succeeded / failed / dead: attempts by outcome (failed = will be retried; dead = the last one failed)
--   first_attempts, lag_ms_sum, lag_ms_max: first attempts, and their start − the event's received_at
--   attempts, latency_ms_sum: every attempt and the sum of their latencies
-- No foreign key to webhook_endpoints: a deleted endpoint's rows are unreachable through the API
-- (the route looks the endpoint up first) and go with the 25-hour retention
-- (src/ops/retention.ts removeExpiredStats). Distributed by org_id on Citus like the other
-- per-tenant tables (src/db/citus.ts).
CREATE TABLE endpoint_stats (
  org_id          uuid NOT NULL,
  endpoint_id     uuid NOT NULL,
  minute          timestamptz NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  succeeded       integer NOT NULL DEFAULT 0,
  failed          integer NOT NULL DEFAULT 0,
  dead            integer NOT NULL DEFAULT 0,
  first_attempts  integer NOT NULL DEFAULT 0,
  lag_ms_sum      bigint NOT NULL DEFAULT 0,
  lag_ms_max      bigint,
  latency_ms_sum  bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org_id, endpoint_id, minute)
);
