-- Warm pools (issue 23): pre-made databases (each with a role of its own)
-- waiting to be claimed by a new project, so its create skips CREATE DATABASE.
--
-- A row fills one `slot` (0 .. target-1) while it is CREATING or READY; the
-- unique index makes two replicas filling the pool at once fill different
-- slots, so the pool never holds more than its target. A claim (in the
-- project's create transaction) sets CLAIMED, names the claiming database
-- row and frees the slot for a replacement. BROKEN rows (failed a health
-- check, or beyond a lowered target) and CLAIMED rows whose claimer has
-- settled are discarded: what is left of them is dropped, then the row.
-- Rows are leased and fenced like resources (lease_token).
CREATE TABLE pool_databases (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slot            integer CHECK (slot >= 0),
    resource_name   text NOT NULL UNIQUE CHECK (resource_name ~ '^[a-z0-9-]{1,63}$'),
    password_enc    bytea NOT NULL,
    status          text NOT NULL DEFAULT 'CREATING'
                    CHECK (status IN ('CREATING', 'READY', 'BROKEN', 'CLAIMED')),
    claimed_by      uuid,
    claimed_at      timestamptz,
    lease_owner     text,
    lease_token     uuid,
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((slot IS NOT NULL) = (status IN ('CREATING', 'READY')))
);
CREATE UNIQUE INDEX pool_databases_slot ON pool_databases (slot) WHERE slot IS NOT NULL;
CREATE INDEX pool_databases_ready ON pool_databases (created_at) WHERE status = 'READY';

CREATE TRIGGER pool_databases_touch BEFORE UPDATE ON pool_databases
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();

-- The pooled database a project's database was made from (renamed to the
-- project's own name on its first ensure); NULL: made the ordinary way.
ALTER TABLE databases ADD COLUMN pooled_from text CHECK (pooled_from ~ '^[a-z0-9-]{1,63}$');
