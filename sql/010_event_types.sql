-- Event types with JSON Schemas checked before the 202 (issue #26, API.md §3b).
--
-- event_types holds each org's registered types, keyed by org_id first and distributed by it on
-- Citus, colocated with events (src/db/citus.ts). `schema` is json, not jsonb: it is returned as
-- it was sent (key order kept). `id` is new on every create: a type deleted and registered again
-- starts at version 1 with another schema, and the per-process caches of compiled schemas key
-- them by (org, type, id, version) so the two can never be confused (src/event-types/registry.ts).
CREATE TABLE event_types (
  org_id      uuid NOT NULL,
  type        text NOT NULL,
  id          uuid NOT NULL,
  schema      json NOT NULL,
  description text,
  deprecated  boolean NOT NULL DEFAULT false,
  version     integer NOT NULL CHECK (version >= 1),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, type)
);

-- require_event_types: an event whose type has no schema is refused (API.md §3b).
-- event_types_revision rises with every change to the org's event types, in the change's own
-- transaction: a process that missed the NOTIFY finds the orgs whose types it holds stale by
-- polling this column (one small read of a reference table), deletes included.
ALTER TABLE orgs ADD COLUMN require_event_types boolean NOT NULL DEFAULT false;
ALTER TABLE orgs ADD COLUMN event_types_revision bigint NOT NULL DEFAULT 0;

-- The type's version at ingest (null: the type had no schema) and the event's ordering key
-- (API.md §3). Nullable without a default: adding them rewrites no partition.
ALTER TABLE events ADD COLUMN schema_version integer;
ALTER TABLE events ADD COLUMN ordering_key text;
