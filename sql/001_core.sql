-- Orgs, API keys, events and dedup: everything the ingestion core needs.

CREATE TABLE orgs (
  id                 uuid PRIMARY KEY,
  name               text NOT NULL,
  rate_limit_per_sec integer NOT NULL CHECK (rate_limit_per_sec BETWEEN 1 AND 10000000),
  burst              integer NOT NULL CHECK (burst BETWEEN 1 AND 10000000),
  created_at         timestamptz NOT NULL DEFAULT now()
);

-- Only an argon2id hash of the secret is stored; `kid` is the public, indexed half of the key.
CREATE TABLE api_keys (
  id          uuid PRIMARY KEY,
  org_id      uuid NOT NULL REFERENCES orgs (id),
  kid         text NOT NULL UNIQUE,
  env         text NOT NULL CHECK (env IN ('live', 'test')),
  name        text,
  scopes      text[] NOT NULL,
  secret_hash text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);
CREATE INDEX api_keys_revoked ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;

-- Events are partitioned by day of received_at so retention drops whole partitions.
-- `xid` is the inserting transaction's id: readers only hand out rows whose xid is below the
-- oldest running transaction (pg_snapshot_xmin), ordered by (xid, id), so a row that commits
-- late can never land behind a cursor that has already moved on.
CREATE TABLE events (
  org_id      uuid NOT NULL,
  id          uuid NOT NULL,
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  type        text NOT NULL,
  payload     jsonb NOT NULL,
  dedup_id    text,
  occurred_at timestamptz,
  received_at timestamptz NOT NULL,
  acked_at    timestamptz,
  PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

CREATE INDEX events_unacked ON events (org_id, xid, id) WHERE acked_at IS NULL;

-- One row per (org, dedup_id) inside the dedup window. INSERT … ON CONFLICT on this table is what
-- makes dedup exact across concurrent flushes, processes and nodes.
CREATE TABLE event_dedup (
  org_id      uuid NOT NULL,
  dedup_id    text NOT NULL,
  event_id    uuid NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, dedup_id)
);
CREATE INDEX event_dedup_by_age ON event_dedup (received_at);

-- Creates the daily partitions covering [from_day, to_day] (UTC); safe to call repeatedly.
CREATE FUNCTION ensure_event_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  day date := from_day;
  created integer := 0;
  name text;
BEGIN
  WHILE day <= to_day LOOP
    name := 'events_' || to_char(day, 'YYYYMMDD');
    IF to_regclass(name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                     name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
      created := created + 1;
    END IF;
    day := day + 1;
  END LOOP;
  RETURN created;
END $$;
