-- What each sandbox session's Claude Code is doing, as its hooks report it
-- (issue 20). One row per (sandbox, session); '' is the default session.
-- No row means `unknown`. Rows go when the sandbox stops or is deleted, so
-- a stale state is never shown.
CREATE TABLE agent_states (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sandbox_id  uuid NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session     text NOT NULL DEFAULT '' CHECK (session ~ '^[a-z0-9-]{0,20}$'),
    state       text NOT NULL CHECK (state IN
                ('working', 'needs_input', 'idle', 'done', 'ended', 'unknown')),
    message     text NOT NULL DEFAULT '' CHECK (length(message) <= 400),
    entered_at  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sandbox_id, session)
);
CREATE INDEX agent_states_user_id ON agent_states (user_id);
CREATE INDEX agent_states_project_id ON agent_states (project_id);

-- A user's notifications: one row per transition into needs_input or done.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id  uuid REFERENCES projects (id) ON DELETE CASCADE,
    session     text NOT NULL DEFAULT '',
    kind        text NOT NULL,
    message     text NOT NULL DEFAULT '',
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user_id_created_at ON notifications (user_id, created_at);

-- Per-project mute of agent notifications (the state is still kept and shown).
ALTER TABLE projects ADD COLUMN agent_muted boolean NOT NULL DEFAULT false;

CREATE TRIGGER agent_states_touch BEFORE UPDATE ON agent_states
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
CREATE TRIGGER agent_states_notify AFTER INSERT OR UPDATE OR DELETE ON agent_states
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();
CREATE TRIGGER notifications_touch BEFORE UPDATE ON notifications
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
CREATE TRIGGER notifications_notify AFTER INSERT OR UPDATE OR DELETE ON notifications
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();

-- A sandbox that stops, is deleted or fails takes its sessions' states with
-- it: whatever they said is no longer true. (Reports are taken from a sandbox
-- that is starting too: its program reports before RUNNING is recorded.)
CREATE FUNCTION kiln_clear_agent_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM agent_states WHERE sandbox_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER sandboxes_clear_agent_states AFTER UPDATE OF status ON sandboxes
    FOR EACH ROW WHEN (NEW.status IN ('STOPPING', 'STOPPED', 'TERMINATING', 'TERMINATED', 'ERROR')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln_clear_agent_states();
