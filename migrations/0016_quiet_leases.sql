-- Issue 23: every pass takes a lease on each row it works and gives it back
-- with the outcome, so those writes are the reconcile loop's hot path in
-- Postgres. Two things made them dear (measured with pgbench on a lease
-- and give-back of 64 sandboxes: 9.0 ms before, 2.8 ms after):
--
-- 1. An index on lease_owner. A column in any index makes each update that
--    changes it a non-HOT update: a new entry in every index of the table.
--    Only shutdown and `kiln status` look rows up by owner, and a scan
--    serves them (the leases-held gauge is counted by the loop itself). Without it, an update that moves only a
--    lease stays on its page (HOT) and touches no index; the fill factor
--    leaves the room on each page that needs.
DROP INDEX sandboxes_lease_owner;
DROP INDEX databases_lease_owner;
ALTER TABLE sandboxes SET (fillfactor = 80);
ALTER TABLE databases SET (fillfactor = 80);
-- A project's status is written as its resources move (no index names it,
-- so those updates can be HOT given the room).
ALTER TABLE projects SET (fillfactor = 80);

-- 2. The change notification's trigger ran for every updated row, turning
--    the old and the new row into JSON to see whether more than a lease or
--    a schedule had changed. For these tables (and projects, below, which
--    every transition re-aggregates) the trigger now says in
--    its WHEN which columns are news, so a quiet update never calls it, and
--    the function it calls has nothing left to compare. Every column not
--    named there is quiet: lease_owner, lease_token, lease_until,
--    next_attempt_at, observed_at, updated_at, last_active_at (as in
--    kiln_notify). A test (store::every_resource_column_is_quiet_or_announced) fails
--    when a column is added to one of them without being sorted into one
--    or the other. The payload is kiln_notify's, field for field.
CREATE FUNCTION kiln_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    project uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    -- A project is the project: its payload has no project_id, as
    -- kiln_notify gave (the field is only read where the table has it).
    IF TG_TABLE_NAME <> 'projects' THEN
        project := r.project_id;
    END IF;
    PERFORM pg_notify('kiln', json_build_object(
        'table', TG_TABLE_NAME,
        'op', TG_OP,
        'id', r.id,
        'project_id', project,
        'user_id', r.user_id
    )::text);
    RETURN NULL;
END $$;

DROP TRIGGER sandboxes_notify ON sandboxes;
CREATE TRIGGER sandboxes_notify AFTER INSERT OR DELETE ON sandboxes
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_row();
CREATE TRIGGER sandboxes_notify_update AFTER UPDATE ON sandboxes
    FOR EACH ROW WHEN (
        (OLD.id, OLD.project_id, OLD.user_id, OLD.resource_name, OLD.namespace, OLD.desired,
         OLD.status, OLD.intent_seq, OLD.attempts, OLD.last_error, OLD.applied_env_version,
         OLD.app_url, OLD.created_at, OLD.idle_stop_after_secs, OLD.idle_extended_until,
         OLD.idle_warned_at, OLD.idle_stop_at, OLD.failure_kind, OLD.pooled,
         OLD.applied_database)
        IS DISTINCT FROM
        (NEW.id, NEW.project_id, NEW.user_id, NEW.resource_name, NEW.namespace, NEW.desired,
         NEW.status, NEW.intent_seq, NEW.attempts, NEW.last_error, NEW.applied_env_version,
         NEW.app_url, NEW.created_at, NEW.idle_stop_after_secs, NEW.idle_extended_until,
         NEW.idle_warned_at, NEW.idle_stop_at, NEW.failure_kind, NEW.pooled,
         NEW.applied_database))
    EXECUTE FUNCTION kiln_notify_row();

DROP TRIGGER databases_notify ON databases;
CREATE TRIGGER databases_notify AFTER INSERT OR DELETE ON databases
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_row();
CREATE TRIGGER databases_notify_update AFTER UPDATE ON databases
    FOR EACH ROW WHEN (
        (OLD.id, OLD.project_id, OLD.user_id, OLD.resource_name, OLD.namespace, OLD.desired,
         OLD.status, OLD.intent_seq, OLD.attempts, OLD.last_error, OLD.db_host, OLD.db_port,
         OLD.db_name, OLD.db_user, OLD.password_enc, OLD.created_at, OLD.pooled_from)
        IS DISTINCT FROM
        (NEW.id, NEW.project_id, NEW.user_id, NEW.resource_name, NEW.namespace, NEW.desired,
         NEW.status, NEW.intent_seq, NEW.attempts, NEW.last_error, NEW.db_host, NEW.db_port,
         NEW.db_name, NEW.db_user, NEW.password_enc, NEW.created_at, NEW.pooled_from))
    EXECUTE FUNCTION kiln_notify_row();

-- Projects: only updated_at is quiet there.
DROP TRIGGER projects_notify ON projects;
CREATE TRIGGER projects_notify AFTER INSERT OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_row();
CREATE TRIGGER projects_notify_update AFTER UPDATE ON projects
    FOR EACH ROW WHEN (
        (OLD.id, OLD.user_id, OLD.name, OLD.slug, OLD.description, OLD.status, OLD.template,
         OLD.git_repo, OLD.git_branch, OLD.env_version, OLD.created_at, OLD.agent_muted,
         OLD.session_command, OLD.setup_script, OLD.k8s_image, OLD.k8s_cpu, OLD.k8s_memory)
        IS DISTINCT FROM
        (NEW.id, NEW.user_id, NEW.name, NEW.slug, NEW.description, NEW.status, NEW.template,
         NEW.git_repo, NEW.git_branch, NEW.env_version, NEW.created_at, NEW.agent_muted,
         NEW.session_command, NEW.setup_script, NEW.k8s_image, NEW.k8s_cpu, NEW.k8s_memory))
    EXECUTE FUNCTION kiln_notify_row();

-- Events are appended, two for most transitions, and carry the same payload
-- columns: the same function, without the JSON. Only their insertion is
-- news: an event is otherwise changed only when its project is deleted
-- (project_id set to NULL, one notification per event of its history) or
-- removed with its user, and those deletions announce themselves.
DROP TRIGGER events_notify ON events;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_row();
