-- Failed (or in-flight) password sign-ins per bucket: a source address
-- (`addr:…`) or a username (`user:…`). Shared by every replica, so N
-- replicas allow the same number of guesses as one.
CREATE TABLE signin_failures (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_key_at ON signin_failures (key, at);
CREATE INDEX signin_failures_at ON signin_failures (at);
