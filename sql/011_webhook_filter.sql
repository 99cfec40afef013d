-- A webhook endpoint's payload filter (API.md §5 `filter`): the operator language of
-- src/filter/filter.ts, stored as the client sent it and compiled once per endpoint by the
-- delivery process that streams it. Events it leaves out create no delivery: the stream moves its
-- cursor past them as past events of other types. NULL: every event (of its event_types).
ALTER TABLE webhook_endpoints ADD COLUMN filter jsonb;
