-- Webhook endpoints, their fan-out cursors, deliveries and the attempts made for each.

CREATE TABLE webhook_endpoints (
  id                         uuid PRIMARY KEY,
  org_id                     uuid NOT NULL REFERENCES orgs (id),
  url                        text NOT NULL,
  description                text,
  -- Empty = every type. Entries are exact types or prefixes ending in "*" ("user.*").
  event_types                text[] NOT NULL DEFAULT '{}',
  enabled                    boolean NOT NULL DEFAULT true,
  disabled_reason            text,
  secret                     text NOT NULL,
  -- During a rotation the old secret signs too, until previous_secret_expires_at.
  previous_secret            text,
  previous_secret_expires_at timestamptz,
  -- Fan-out cursor, the same no-skip watermark as the inbox: the last (xid, id) already turned
  -- into deliveries. Only events with received_at >= deliver_from count (creation, or re-enable).
  cursor_xid                 xid8 NOT NULL,
  cursor_id                  uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
  deliver_from               timestamptz NOT NULL,
  -- First failed attempt since the last success; drives WEBHOOK_DISABLE_AFTER_HOURS.
  failing_since              timestamptz,
  created_at                 timestamptz NOT NULL DEFAULT now(),
  updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints (org_id, created_at);
CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (id) WHERE enabled;

-- One row per (endpoint, event). `retry_index` is the position in the retry schedule (failed
-- attempts since created or recovered). A sender claims a row by writing lease_owner (a
-- delivery_workers id) and lease_until; a lease whose owner stopped heartbeating is free again.
CREATE TABLE webhook_deliveries (
  id                uuid PRIMARY KEY,
  endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  event_id          uuid NOT NULL,
  event_received_at timestamptz NOT NULL,
  status            text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
  retry_index       integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz,
  lease_owner       uuid,
  lease_until       timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (endpoint_id, status, id);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (created_at);

CREATE TABLE webhook_attempts (
  delivery_id     uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempted_at    timestamptz NOT NULL,
  response_status integer,
  latency_ms      integer NOT NULL,
  error           text,
  next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempted_at);

-- Live delivery worker processes (any node). A lease is honoured only while its owner's
-- heartbeat is fresh, so a SIGKILLed worker's deliveries are picked up again within seconds.
CREATE TABLE delivery_workers (
  id           uuid PRIMARY KEY,
  host         text NOT NULL,
  pid          integer NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Fan-out reads every event of an org in (xid, id) order, acknowledged or not; the inbox index
-- (events_unacked) is partial on acked_at IS NULL and cannot serve it.
CREATE INDEX events_by_org_xid ON events (org_id, xid, id);
