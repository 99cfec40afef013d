-- Destinations beyond HTTP (API.md §5b) are endpoints of another kind: the same row, lease,
-- cursor, deliveries and attempt log as a webhook, so one delivery engine serves every kind
-- (src/delivery/transport.ts). `kind` says which wire carries it; `config` holds a broker
-- destination's settings, its credentials sealed under SECRETS_KEY when set
-- (src/secrets/sealed.ts). A broker destination keeps a masked form of its target in `url`
-- (never a credential), so the column stays NOT NULL and readers that only show it need no change.
-- Existing rows are webhooks: the default fills them without rewriting the table.
ALTER TABLE webhook_endpoints ADD COLUMN kind text NOT NULL DEFAULT 'http';
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_kind_check CHECK (kind IN ('http', 'rabbitmq', 'nats', 'redis_stream'));
ALTER TABLE webhook_endpoints ADD COLUMN config jsonb;
