-- The idle stop policy and the notifications list (issue 19, parts 4 and 5).

-- Per sandbox: the project's own idle setting (NULL: the server's
-- idle.stop_after; 0: off; else seconds), the end of an extension, and the
-- warning of the current idle stretch with the stop it announced.
ALTER TABLE sandboxes
    ADD COLUMN idle_stop_after_secs integer CHECK (idle_stop_after_secs >= 0),
    ADD COLUMN idle_extended_until  timestamptz,
    ADD COLUMN idle_warned_at       timestamptz,
    ADD COLUMN idle_stop_at         timestamptz;

-- Seconds added to a time: immutable (no month or day arithmetic), so it
-- can be indexed.
CREATE FUNCTION kiln_plus_secs(at timestamptz, secs integer) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT at + secs * interval '1 second' $$;

-- The sweep's one query reads three ranges of running sandboxes: those on
-- the server's default by their last activity, those with their own
-- setting by their own deadline, and those already warned.
CREATE INDEX sandboxes_idle_default ON sandboxes (last_active_at)
    WHERE desired = 'RUNNING' AND status = 'RUNNING' AND idle_stop_after_secs IS NULL;
CREATE INDEX sandboxes_idle_own ON sandboxes (kiln_plus_secs(last_active_at, idle_stop_after_secs))
    WHERE desired = 'RUNNING' AND status = 'RUNNING' AND idle_stop_after_secs > 0;
CREATE INDEX sandboxes_idle_warned ON sandboxes (idle_stop_at)
    WHERE idle_stop_at IS NOT NULL;

-- A sandbox that starts running starts a new idle stretch; one that
-- leaves RUNNING forgets its extension and warning.
CREATE FUNCTION kiln_idle_on_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'RUNNING' THEN
        NEW.last_active_at := GREATEST(COALESCE(NEW.last_active_at, now()), now());
    ELSE
        NEW.idle_extended_until := NULL;
        NEW.idle_warned_at := NULL;
        NEW.idle_stop_at := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sandboxes_idle_on_insert BEFORE INSERT ON sandboxes
    FOR EACH ROW WHEN (NEW.status = 'RUNNING' AND NEW.last_active_at IS NULL)
    EXECUTE FUNCTION kiln_idle_on_status();
CREATE TRIGGER sandboxes_idle_on_status BEFORE UPDATE OF status ON sandboxes
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln_idle_on_status();
UPDATE sandboxes SET last_active_at = now() WHERE status = 'RUNNING' AND last_active_at IS NULL;

-- A project that enters ERROR tells its owner why, whichever writer put it
-- there.
CREATE FUNCTION kiln_notify_project_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    why text;
BEGIN
    SELECT last_error INTO why FROM (
        SELECT last_error, updated_at FROM sandboxes WHERE project_id = NEW.id AND status = 'ERROR'
        UNION ALL
        SELECT last_error, updated_at FROM databases WHERE project_id = NEW.id AND status = 'ERROR'
    ) e ORDER BY updated_at DESC LIMIT 1;
    INSERT INTO notifications (user_id, project_id, kind, message)
    VALUES (NEW.user_id, NEW.id, 'project_failed', left(COALESCE(why, 'failed'), 400));
    RETURN NULL;
END $$;
CREATE TRIGGER projects_notify_failed AFTER UPDATE OF status ON projects
    FOR EACH ROW WHEN (NEW.status = 'ERROR' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln_notify_project_failed();

-- Unread notifications are counted on every dashboard; retention prunes by age.
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
CREATE INDEX notifications_created_at ON notifications (created_at);
