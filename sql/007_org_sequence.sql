-- (The watermark's registrations in event_inflight were replaced by 008_flush_fences.sql.)
-- Per-org commit order (issue #13): one schema for plain Postgres and Citus.
--
-- Before: events were ordered by the inserting transaction's xid, and readers handed out only rows
-- below the oldest running transaction (pg_snapshot_xmin). On Citus that watermark bounds nothing:
-- COPY evaluates column defaults on the coordinator (the xid is the coordinator's), and a COPY that
-- touches several workers commits with two-phase commit, the workers' COMMIT PREPARED after the
-- coordinator's commit. A reader could pass an xid whose rows a worker had not yet made visible.
--
-- Now every event has `seq`, drawn from one sequence (event_order) when its row is written, and
-- readers use a watermark made of seq values instead of xids. Before a flush draws any number it
-- registers itself in event_inflight, one row per org it writes, holding a number drawn then
-- (low_seq: below every number the flush will draw). That registration commits on its own, first.
-- The flush's transaction deletes its rows from event_inflight and inserts its events: both
-- become visible together. So for an org, in any snapshot:
--   watermark = the lowest low_seq of the org's registered flushes (or no limit when there is none)
-- and every event of the org below the watermark that will ever commit is already visible: a flush
-- not yet committed is either registered (its events are at or above its low_seq) or will draw
-- its numbers later, above everything visible now. Readers hand out only rows below the watermark.
-- event_inflight is colocated with events on Citus: an org's registration, its removal and the
-- org's rows live on one shard, and one statement reads them in one snapshot on that node.
--
-- A flush that dies between registering and committing leaves its row behind; readers ignore rows
-- past expires_at, which the flushing node sets beyond the longest its transaction can live
-- (its statement_timeout, twice, and a margin), and the retention job removes them.
--
-- Why not a per-org counter locked until commit (numbers contiguous per org, the issue's first
-- candidate): measured here, one org's flushes then take turns, and single-event ingest of one
-- org fell by 22-51% (docs/SCALING.md, "The order of events"); a hot org could never use more than
-- one core of the database. Registration costs a few small statements per flush (its insert and
-- commit, the transaction around the COPY, the removal), sent in the same Query message as the
-- COPY (src/db/copy-pool.ts): −10 to −16% for single events, within noise for batches.
--
-- The sequence must not cache (CACHE 1, the default): a cached block per session would hand out
-- numbers out of time order. On Citus, COPY and INSERT evaluate the default on the coordinator:
-- keep DATABASE_URL on the coordinator (docs/SCALING.md). event_inflight is UNLOGGED: a crash
-- empties it, and with it only flushes that died too.
--
-- Also for Citus: every unique key of a per-tenant table now starts with org_id (the
-- distribution column). src/db/citus.ts distributes the tables when the citus extension is present.
--
-- Locks (docs/SCALING.md, "Upgrading"): this migration rewrites every events row (seq) and rebuilds
-- its indexes under ACCESS EXCLUSIVE on events and webhook_endpoints: stop every node first, and
-- expect minutes per ten million events.

-- Flushes registered and not yet committed (see above), per org.
CREATE UNLOGGED TABLE event_inflight (
  org_id     uuid NOT NULL,
  flush_id   uuid NOT NULL,
  low_seq    bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, flush_id)
);

CREATE SEQUENCE event_order AS bigint;

ALTER TABLE events ADD COLUMN seq bigint;

-- Existing events keep the order readers saw: (xid, id) within each org.
UPDATE events e SET seq = n.seq
FROM (SELECT org_id, id, received_at, row_number() OVER (PARTITION BY org_id ORDER BY xid, id) AS seq FROM events) n
WHERE e.org_id = n.org_id AND e.id = n.id AND e.received_at = n.received_at;

-- New events of every org come after the numbers given above.
SELECT setval('event_order', greatest(1, (SELECT max(seq) FROM events)), (SELECT max(seq) FROM events) IS NOT NULL);

ALTER TABLE events ALTER COLUMN seq SET NOT NULL, ALTER COLUMN seq SET DEFAULT nextval('event_order');

-- An endpoint's cursor (xid, id) becomes the seq of the last event at or before it.
ALTER TABLE webhook_endpoints ADD COLUMN cursor_seq bigint;
UPDATE webhook_endpoints w SET cursor_seq = coalesce(
  (SELECT max(e.seq) FROM events e WHERE e.org_id = w.org_id AND (e.xid, e.id) <= (w.cursor_xid, w.cursor_id)), 0);
ALTER TABLE webhook_endpoints ALTER COLUMN cursor_seq SET NOT NULL, DROP COLUMN cursor_xid;

DROP INDEX events_unacked;
DROP INDEX events_unacked_by_type;
DROP INDEX events_acked_by_org_xid;
ALTER TABLE events DROP COLUMN xid;

-- The inbox (unacknowledged) and webhook streams (both kinds) read one org in seq order.
CREATE INDEX events_unacked ON events (org_id, seq) WHERE acked_at IS NULL;
CREATE INDEX events_unacked_by_type ON events (org_id, type COLLATE "C", seq) WHERE acked_at IS NULL;
CREATE INDEX events_acked_by_org_seq ON events (org_id, seq) WHERE acked_at IS NOT NULL;

-- Keys that start with the distribution column. Every look-up by id already names the org.
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (org_id, id, received_at);

-- (named when 006 created the table as webhook_deliveries_v2)
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_v2_org_id_endpoint_id_fkey;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_pkey;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_org_id_id;
ALTER TABLE webhook_endpoints ADD PRIMARY KEY (org_id, id);
ALTER TABLE webhook_deliveries ADD FOREIGN KEY (org_id, endpoint_id) REFERENCES webhook_endpoints (org_id, id) ON DELETE CASCADE;
DROP INDEX webhook_endpoints_enabled;
CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (org_id, id) WHERE enabled;

