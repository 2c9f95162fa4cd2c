-- The warm pool of local sandboxes (issue 23): pre-started, unclaimed,
-- confined sandboxes (an empty working directory, a tmux server with no
-- session, its network up) waiting to be claimed by a new project.
--
-- Slots, leases and fencing work as in pool_databases (0012). A claim (in
-- the project's create transaction) deletes the row and gives its
-- resource_name to the project's sandbox row: a pooled sandbox is started
-- under the name it keeps for life (see src/local/pooled.rs for why), so
-- nothing is left to clean up after a claim. BROKEN rows (failed a health
-- check, or beyond a lowered target) are ended and removed, then deleted.
CREATE TABLE pool_sandboxes (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slot            integer CHECK (slot >= 0),
    resource_name   text NOT NULL UNIQUE CHECK (resource_name ~ '^[a-z0-9-]{1,63}$'),
    status          text NOT NULL DEFAULT 'CREATING'
                    CHECK (status IN ('CREATING', 'READY', 'BROKEN')),
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
CREATE UNIQUE INDEX pool_sandboxes_slot ON pool_sandboxes (slot) WHERE slot IS NOT NULL;
CREATE INDEX pool_sandboxes_ready ON pool_sandboxes (created_at) WHERE status = 'READY';

CREATE TRIGGER pool_sandboxes_touch BEFORE UPDATE ON pool_sandboxes
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();

-- Whether the sandbox was claimed from the pool (it then bears the pooled
-- sandbox's name, not one made from its project's slug).
ALTER TABLE sandboxes ADD COLUMN pooled boolean NOT NULL DEFAULT false;
