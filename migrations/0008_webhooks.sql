-- Users' agent webhooks (issue 20). The URL itself is a user config
-- (WEBHOOK_URL, encrypted like every secret). Each notification of a user
-- with a webhook queues one delivery, written in the notification's own
-- transaction; the delivery task of any replica takes it (a lease through
-- next_attempt_at, so a replica that dies mid-delivery only delays it).
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_next_attempt_at ON webhook_deliveries (next_attempt_at);

-- The last outcome of a user's webhook, shown in their settings.
CREATE TABLE webhook_status (
    user_id           uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_error        text,
    last_error_at     timestamptz,
    last_delivered_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER webhook_deliveries_touch BEFORE UPDATE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
-- Wakes the delivery task at once (updates are its own: only inserts).
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();
CREATE TRIGGER webhook_status_touch BEFORE UPDATE ON webhook_status
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
CREATE TRIGGER webhook_status_notify AFTER INSERT OR UPDATE ON webhook_status
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();
