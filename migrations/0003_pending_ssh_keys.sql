-- Keys a user asked to add (`keys add`) but has not yet proved to hold.
-- One becomes an identity at the first sign-in signed with it; until then
-- it lets nobody in as anyone. Not unique across users: a key pending for
-- one user never stops another (its real holder) from adding it.
CREATE TABLE pending_ssh_keys (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    metadata    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, fingerprint)
);
CREATE INDEX pending_ssh_keys_fingerprint ON pending_ssh_keys (fingerprint);
