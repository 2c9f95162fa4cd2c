-- Accounts created by open sign-up, per source address, so sign-ups can be
-- throttled per address; shared by every replica. Rows older than the
-- sign-up window are deleted as new sign-ups come in.
CREATE TABLE signups (
    id BIGSERIAL PRIMARY KEY,
    address TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX signups_address_at ON signups (address, at);
CREATE INDEX signups_at ON signups (at);
