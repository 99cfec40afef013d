-- Consumer groups (issue #24, API.md §4b): named, durable positions in an org's event stream.
--
-- A group is a position plus the exceptions above it, never a mark on the event row (an ack that
-- rewrote events made the inbox drain 10x slower than ingest: docs/CONSUMER-GROUPS.md).
--
-- consumer_groups.frontier is a seq (sql/008_flush_fences.sql): every event of the org at or
-- below it has been looked at by the group, and every one above it not yet. An event at or below
-- the frontier is done for the group unless it is named in one of the group's
-- consumer_group_batches rows: those are the exceptions, the events handed out and not yet acked
-- (leased, or waiting to be handed out again after a lease expired, a nack or a redrive) and the
-- dead ones. Events the group's event_types or filter left out are named nowhere: done.
--
-- A batch row names a set of events (by seq and id, or as a range of seqs) that share one
-- state, one delivery count and one time. A receive of 1 000 new events writes one row and moves
-- the frontier; an ack of that page deletes the row: O(1) writes per page, not per event. An ack, nack or extend of part of a batch splits it (the part becomes a row of its
-- own); that costs writes per affected batch, still not per event.
--
-- Rows are keyed by org_id first and distributed by it on Citus (src/db/citus.ts), colocated
-- with events: a receive reads the group, its batches and the org's events on one shard.
-- Retention drops event partitions without touching these tables: a batch that names an event
-- that is gone drops the name when it is next read.

CREATE TABLE consumer_groups (
  org_id               uuid NOT NULL,
  name                 text NOT NULL,
  -- A new id on every create: a group deleted and made again under its name starts clean.
  id                   uuid NOT NULL,
  start                text NOT NULL CHECK (start IN ('earliest', 'latest')),
  event_types          text[] NOT NULL DEFAULT '{}',
  filter               jsonb,
  visibility_timeout_s integer NOT NULL CHECK (visibility_timeout_s BETWEEN 1 AND 43200),
  max_deliveries       integer NOT NULL CHECK (max_deliveries BETWEEN 1 AND 1000),
  frontier             bigint NOT NULL,
  -- received_at of the event at the frontier (null before the first): reads of new events start
  -- from the partitions of about that time (src/delivery/event-reader.ts, RECEIVED_SLACK_MS).
  frontier_at          timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, name)
);

CREATE TABLE consumer_group_batches (
  org_id         uuid NOT NULL,
  group_id       uuid NOT NULL,
  -- The lowest and highest seq of the batch's events. first_seq is unique within a group, as
  -- batches never share an event.
  first_seq      bigint NOT NULL,
  last_seq       bigint NOT NULL,
  -- The events, as parallel arrays in seq order; both null for a batch that is every event of the
  -- org from first_seq to last_seq (what a receive of a group without event_types or filter hands
  -- out: the range is below the watermark, so no event can join it later). That form costs a
  -- page of 1 000 a few dozen bytes instead of 24 KB of arrays.
  seqs           bigint[],
  ids            uuid[],
  size           integer NOT NULL,
  -- The smallest id (UUIDv7: the oldest received_at), for oldest_pending_at.
  min_id         uuid NOT NULL,
  -- sha256 of the batch's ids, sorted and joined by commas (sha1 in batches written before
  -- 2026-12-05; src/groups/batches.ts idsDigest): an ack of exactly these ids (a consumer acking
  -- the page it received) finds the batch by it and deletes it, without reading events.
  digest         bytea,
  -- leased: handed out until visible_at; waiting: to be handed out from visible_at (an expired
  -- lease reads as waiting); dead: delivered max_deliveries times without an ack.
  state          text NOT NULL CHECK (state IN ('leased', 'waiting', 'dead')),
  delivery_count integer NOT NULL,
  visible_at     timestamptz NOT NULL,
  PRIMARY KEY (org_id, group_id, first_seq)
);
-- Receives look for batches due again, oldest first.
CREATE INDEX consumer_group_batches_due ON consumer_group_batches (org_id, group_id, visible_at) WHERE state <> 'dead';
