-- Webhook fan-out without a per-row btree on events.
--
-- events_by_org_xid (org_id, xid, id) existed only so that fan-out could scan each endpoint's
-- org in xid order, and every ingested row paid for it. Fan-out now keeps one global cursor and
-- reads events of every org with an enabled endpoint in (xid, id) order through a BRIN index
-- (src/delivery/fanout.ts). Measured: Postgres backend CPU per row, COPY of 200 000 rows in
-- 1 000-row transactions into the events table with its other indexes, on a shared 2-core
-- machine (±3 µs of noise between runs), alternating configurations:
--   19 rounds: no extra index 25.1 µs; the BRIN (128-page ranges, left unsummarized) 25.1 µs;
--   events_by_org_xid 30.6 µs.
--   6 rounds, this BRIN as deployed (32-page ranges, summarize_recent_event_xid_ranges() every
--   5 000 rows, the summarizing counted in): no extra index 23.5 µs; BRIN 24.9 µs (+1.4);
--   events_by_org_xid 28.1 µs (+4.5).

-- The single fan-out cursor: the last (xid, id) turned into deliveries, for every endpoint.
-- A pass locks this row FOR UPDATE SKIP LOCKED (one pass at a time, cluster-wide); creating or
-- re-enabling an endpoint locks it FOR SHARE (src/webhooks/service.ts explains why).
CREATE TABLE webhook_fanout (
  id         integer PRIMARY KEY CHECK (id = 1),
  cursor_xid xid8 NOT NULL,
  cursor_id  uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
);

-- Start at the current watermark, or earlier where an enabled endpoint still has events it has
-- not turned into deliveries (an upgrade): at the first such event of any endpoint, found with
-- the per-endpoint cursors and events_by_org_xid while both still exist. Events between that
-- point and an endpoint's own cursor are read again; the unique (endpoint_id, event_id) of
-- webhook_deliveries keeps them from being delivered twice.
INSERT INTO webhook_fanout (id, cursor_xid)
SELECT 1, least(
  pg_snapshot_xmin(pg_current_snapshot()),
  (SELECT min(pending.xid)
   FROM webhook_endpoints e
   CROSS JOIN LATERAL (
     SELECT ev.xid FROM events ev
     WHERE ev.org_id = e.org_id
       AND (ev.xid, ev.id) > (e.cursor_xid, e.cursor_id)
       AND ev.received_at >= e.deliver_from
     ORDER BY ev.xid, ev.id
     LIMIT 1) pending
   WHERE e.enabled));

ALTER TABLE webhook_endpoints DROP COLUMN cursor_xid, DROP COLUMN cursor_id;

-- xid8 has no BRIN operator class; its decimal text as bigint orders the same (an xid8 is below
-- 2^63). Rows are appended roughly in xid order, so each block range covers a narrow xid
-- interval and a pass reads only the ranges overlapping its window: at least the newest one, so
-- smaller ranges make each pass cheaper (at the tail of 200 000 rows: ~2-3 ms per pass with
-- 32-page ranges, ~6 ms with the default 128).
-- BRIN sees ranges it has not summarized yet as matching everything; the fan-out keeps that tail
-- short by calling summarize_recent_event_xid_ranges() about once a second. autosummarize stays
-- off: it queues one autovacuum work item per filled range, and at 32 pages per range a busy
-- server fills more than the 256-item queue holds per autovacuum naptime (each lost request is a
-- line in the Postgres log); VACUUM still summarizes whatever the fan-out did not.
CREATE INDEX events_xid_brin ON events USING brin (((xid::text)::bigint)) WITH (pages_per_range = 32);

DROP INDEX events_by_org_xid;

-- Summarizes the block ranges of events_xid_brin that have filled since the last call, on the
-- partitions that still take inserts (yesterday to tomorrow, UTC; partitions are named
-- events_YYYYMMDD by ensure_event_partitions). Only full ranges: once a range is summarized,
-- every row inserted into it must read and compare its summary (measured: +3-5 µs per row when the
-- newest, filling range was kept summarized too), while rows going into an unsummarized range
-- cost next to nothing. A pass reads the filling range whole anyway (at most pages_per_range
-- pages). Walks back from the newest full range and stops at the first one already summarized:
-- ranges are only ever summarized here (newest first, back to the previous stop) or by VACUUM
-- (all of them), so everything older is summarized too.
-- brin_summarize_range takes SHARE UPDATE EXCLUSIVE on the partition, which never blocks
-- inserts; the caller sets a short lock_timeout so it never waits behind a vacuum either.
CREATE FUNCTION summarize_recent_event_xid_ranges() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  part record;
  range_start bigint;
  done integer;
  summarized integer := 0;
BEGIN
  FOR part IN
    SELECT i.inhrelid::regclass AS brin, x.indrelid::regclass AS heap,
           coalesce((SELECT option_value::integer FROM pg_options_to_table(ic.reloptions)
                     WHERE option_name = 'pages_per_range'), 128) AS pages_per_range
    FROM pg_inherits i
    JOIN pg_index x ON x.indexrelid = i.inhrelid
    JOIN pg_class ic ON ic.oid = i.inhrelid
    JOIN pg_class t ON t.oid = x.indrelid
    WHERE i.inhparent = 'events_xid_brin'::regclass
      AND t.relname BETWEEN 'events_' || to_char((now() AT TIME ZONE 'UTC')::date - 1, 'YYYYMMDD')
                        AND 'events_' || to_char((now() AT TIME ZONE 'UTC')::date + 1, 'YYYYMMDD')
  LOOP
    -- The first block of the newest full range (negative when not even one range is full).
    range_start := (pg_relation_size(part.heap) / current_setting('block_size')::bigint / part.pages_per_range - 1)
                   * part.pages_per_range;
    WHILE range_start >= 0 LOOP
      done := brin_summarize_range(part.brin, range_start);
      EXIT WHEN done = 0;
      summarized := summarized + done;
      range_start := range_start - part.pages_per_range;
    END LOOP;
  END LOOP;
  RETURN summarized;
END $$;
