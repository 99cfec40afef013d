-- Per-org commit order (issue #13): one schema for plain Postgres and Citus.
--
-- Before: events were ordered by the inserting transaction's xid, and readers handed out only rows
-- below the oldest running transaction (pg_snapshot_xmin). On Citus that watermark bounds nothing:
-- COPY evaluates column defaults on the coordinator (the xid is the coordinator's), and a COPY that
-- touches several workers commits with two-phase commit, the workers' COMMIT PREPARED after the
-- coordinator's commit. A reader could pass an xid whose rows a worker had not yet made visible.
--
-- Now every event has `seq`, its position in its org's commit order. A flush first locks its
-- orgs' rows in event_seq (counting their events) and holds those locks until it commits; its rows
-- then take their seq from one sequence, event_order. So a later flush of the same org draws its
-- numbers only after the earlier one committed: per org, seq order is commit order, and whoever
-- sees seq n sees every event of the org below n. Readers need no watermark (and a long
-- transaction elsewhere no longer holds the inbox back). Numbers are not contiguous per org (the
-- sequence is shared by all orgs); nothing relies on that.
--
-- Why the sequence, and not numbers read from event_seq (contiguous per org): the flush would
-- have to read the numbers before it could send its COPY, a round trip inside the lock, and one
-- org's flushes then ran at half the rate (docs/SCALING.md, "The per-org order"). With the
-- sequence the lock, the COPY and the COMMIT go in one write.
--
-- event_seq lives with the org's events (the same shard on Citus), so the lock and the rows
-- commit together on one node. The sequence must not cache (CACHE 1, the default): a cached
-- block per session would hand out numbers out of time order. On Citus, COPY and INSERT evaluate
-- the default on the coordinator: keep DATABASE_URL on the coordinator (docs/SCALING.md).
--
-- Also for Citus: every unique key of a per-tenant table now starts with org_id (the
-- distribution column). src/db/citus.ts distributes the tables when the citus extension is present.
--
-- Locks (docs/SCALING.md, "Upgrading"): this migration rewrites every events row (seq) and rebuilds
-- its indexes under ACCESS EXCLUSIVE on events and webhook_endpoints: stop every node first, and
-- expect minutes per ten million events.

-- One row per org: the lock a flush holds until it commits, and how many events it has stored.
CREATE TABLE event_seq (
  org_id uuid PRIMARY KEY,
  events bigint NOT NULL
);

CREATE SEQUENCE event_order AS bigint;

ALTER TABLE events ADD COLUMN seq bigint;

-- Existing events keep the order readers saw: (xid, id) within each org.
UPDATE events e SET seq = n.seq
FROM (SELECT org_id, id, received_at, row_number() OVER (PARTITION BY org_id ORDER BY xid, id) AS seq FROM events) n
WHERE e.org_id = n.org_id AND e.id = n.id AND e.received_at = n.received_at;

INSERT INTO event_seq (org_id, events) SELECT org_id, count(*) FROM events GROUP BY org_id;
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
