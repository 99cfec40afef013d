-- Webhook delivery as one stream per endpoint (src/delivery/ explains the design).
--
-- Before: a global fan-out cursor turned every (endpoint, event) into a 'pending' row, a claim
-- wrote a lease on it, a success updated it and inserted an attempt row: four row writes and
-- five index entries per delivery, a 200 ms poll, ~1.2k deliveries/s. Now each endpoint has its
-- own cursor and one owner process (delivery_leases). The owner reads the endpoint's org's events
-- after the cursor, sends them, and writes one webhook_deliveries row per attempted delivery
-- (attempts inline) plus the cursor, batched: one heap row and one index entry per successful
-- delivery. Only what failed stays in the retry index.
--
-- Distribution (the Citus issue): every per-tenant key starts with org_id, the streams read one
-- org at a time, and the only cross-tenant claim is on delivery_leases, a bookkeeping table.

-- Per-endpoint stream state and delivery controls.
ALTER TABLE webhook_endpoints
  ADD COLUMN cursor_xid xid8,
  ADD COLUMN cursor_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
  ADD COLUMN rate_limit_per_sec integer CHECK (rate_limit_per_sec BETWEEN 1 AND 100000),
  ADD COLUMN ordering text NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'fifo')),
  ADD COLUMN max_in_flight integer CHECK (max_in_flight BETWEEN 1 AND 1000),
  ADD CONSTRAINT webhook_endpoints_org_id_id UNIQUE (org_id, id);

-- Every event below the global fan-out cursor already has its delivery rows; the ones above it
-- are read again by each endpoint's stream.
UPDATE webhook_endpoints SET cursor_xid = (SELECT cursor_xid FROM webhook_fanout WHERE id = 1),
                             cursor_id = (SELECT cursor_id FROM webhook_fanout WHERE id = 1);
UPDATE webhook_endpoints SET cursor_xid = pg_snapshot_xmin(pg_current_snapshot()) WHERE cursor_xid IS NULL;
ALTER TABLE webhook_endpoints ALTER COLUMN cursor_xid SET NOT NULL;

-- One row per (endpoint, event) once it has been attempted or queued (by recover; and, carried
-- over from 004, the fan-out's 'pending' rows, which the retry poll sends).
-- `id` is a UUIDv7 made from the event id's timestamp and a hash of (endpoint, event)
-- (src/delivery/delivery-id.ts): the same delivery always gets the same id, so the primary key
-- alone makes a repeated send after a crash harmless, and ids sort by event time.
-- `attempts` holds every attempt: [{"at", "response_status", "latency_ms", "error", "next_attempt_at"}].
CREATE TABLE webhook_deliveries_v2 (
  org_id            uuid NOT NULL,
  endpoint_id       uuid NOT NULL,
  id                uuid NOT NULL,
  event_id          uuid NOT NULL,
  event_received_at timestamptz NOT NULL,
  status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
  retry_index       integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz,
  attempts          jsonb NOT NULL DEFAULT '[]',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, endpoint_id, id),
  FOREIGN KEY (org_id, endpoint_id) REFERENCES webhook_endpoints (org_id, id) ON DELETE CASCADE
);

INSERT INTO webhook_deliveries_v2 (org_id, endpoint_id, id, event_id, event_received_at, status, retry_index,
                                   next_attempt_at, attempts, created_at, updated_at)
SELECT e.org_id, d.endpoint_id,
       -- The id src/delivery/delivery-id.ts gives this delivery, so a stream that reads the event
       -- again (above the old cursor) finds the row and does not send it twice.
       (substr(d.event_id::text, 1, 8) || '-' || substr(d.event_id::text, 10, 4) || '-7' || substr(h.hex, 1, 3) || '-' ||
        to_hex((('x' || lpad(substr(h.hex, 4, 1), 8, '0'))::bit(32)::int & 3) | 8) || substr(h.hex, 5, 3) || '-' ||
        substr(h.hex, 8, 12))::uuid,
       d.event_id, d.event_received_at, d.status, d.retry_index, d.next_attempt_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                   'at', to_char(a.attempted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   'response_status', a.response_status, 'latency_ms', a.latency_ms, 'error', a.error,
                   'next_attempt_at', to_char(a.next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                   ORDER BY a.attempted_at)
                 FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'),
       d.created_at, d.updated_at
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
CROSS JOIN LATERAL (SELECT encode(sha256(convert_to(d.endpoint_id::text || d.event_id::text, 'UTF8')), 'hex') AS hex) h;

DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_v2 RENAME TO webhook_deliveries;
ALTER TABLE webhook_deliveries RENAME CONSTRAINT webhook_deliveries_v2_pkey TO webhook_deliveries_pkey;

-- Everything not yet succeeded: listing by status, recover, and the owner's count of open rows
-- (fifo). Successful deliveries, nearly all rows, never enter it.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (org_id, endpoint_id, status, id) WHERE status <> 'succeeded';
-- Due retries and recovered deliveries.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (org_id, endpoint_id, next_attempt_at) WHERE status IN ('pending', 'failed');

-- Which delivery process streams which endpoint. Bookkeeping (local on a Citus coordinator):
-- claimed with INSERT … ON CONFLICT DO UPDATE … WHERE expired, renewed with each heartbeat.
CREATE TABLE delivery_leases (
  endpoint_id uuid PRIMARY KEY,
  org_id      uuid NOT NULL,
  owner       uuid NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX delivery_leases_by_owner ON delivery_leases (owner);

-- Streams read one org's events in (xid, id) order from their cursor. The inbox's partial index
-- events_unacked (org_id, xid, id) WHERE acked_at IS NULL already holds every event until it is
-- acknowledged; this one holds the same key for acknowledged events, so a read is one range on
-- each (src/delivery/event-reader.ts). An event enters it when it is acknowledged (the ack
-- already rewrites the row), never at ingest: ingestion pays nothing for webhooks. A full
-- (org_id, xid, id) btree measured -4% single-event and -15% batch ingest here (PERFORMANCE.md);
-- the global cursor's BRIN cost +1.4 µs a row and could only serve one scan of every org at once.
CREATE INDEX events_acked_by_org_xid ON events (org_id, xid, id) WHERE acked_at IS NOT NULL;
DROP INDEX events_xid_brin;
DROP FUNCTION summarize_recent_event_xid_ranges();
DROP TABLE webhook_fanout;
