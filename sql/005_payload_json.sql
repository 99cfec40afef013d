-- The payload is stored as `json` (the validated text, kept verbatim) instead of `jsonb`.
-- Nothing queries inside payloads: every read splices `payload::text` into a response or webhook
-- body. jsonb made Postgres parse each payload and build its binary form on every insert; json
-- only checks the syntax. Measured with COPY of 1 000-row batches into the events table's
-- shape: ~31 µs of backend CPU per row with jsonb, ~23 µs with json (docs/PERFORMANCE.md).
-- On an existing installation this rewrites the events partitions under an exclusive lock:
-- plan the upgrade for a quiet moment if the table is large.
ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::json;
