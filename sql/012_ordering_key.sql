-- Webhook endpoints take ordering "key" (API.md §5): events with the same ordering_key are
-- delivered in inbox order, different keys in parallel (src/delivery/stream.ts). The column's
-- inline check from 006 is named by Postgres; it is replaced by a named one. On Citus both
-- statements run on the coordinator and are propagated to every shard of webhook_endpoints.
ALTER TABLE webhook_endpoints DROP CONSTRAINT IF EXISTS webhook_endpoints_ordering_check;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_ordering_check CHECK (ordering IN ('none', 'fifo', 'key'));
