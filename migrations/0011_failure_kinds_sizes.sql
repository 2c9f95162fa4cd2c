-- Issue 19: failed clones and setup scripts told by name, and a template's
-- Kubernetes image and sizes kept with the project it made.

-- A sandbox whose clone or setup script failed tells its owner so by name
-- (part 5): the ERROR's notification takes the kind the reconcile loop
-- recorded with the error instead of the plain 'project_failed'.

-- NULL unless the sandbox is in ERROR for one of those reasons:
-- 'clone_failed' or 'setup_failed' (model::notice::NoticeKind).
ALTER TABLE sandboxes ADD COLUMN failure_kind text;

CREATE OR REPLACE FUNCTION kiln_notify_project_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    why text;
    what text;
BEGIN
    SELECT last_error, failure_kind INTO why, what FROM (
        SELECT last_error, failure_kind, updated_at FROM sandboxes
        WHERE project_id = NEW.id AND status = 'ERROR'
        UNION ALL
        SELECT last_error, NULL, updated_at FROM databases
        WHERE project_id = NEW.id AND status = 'ERROR'
    ) e ORDER BY updated_at DESC LIMIT 1;
    INSERT INTO notifications (user_id, project_id, kind, message)
    VALUES (NEW.user_id, NEW.id, COALESCE(what, 'project_failed'),
            left(COALESCE(why, 'failed'), 400));
    RETURN NULL;
END $$;

-- What a project's sandbox runs as and asks for on Kubernetes, from its
-- template's [kubernetes] table (checked there: an image reference, CPU
-- and memory quantities); NULL: the server's settings.
ALTER TABLE projects
    ADD COLUMN k8s_image  text CHECK (length(k8s_image) <= 255),
    ADD COLUMN k8s_cpu    text CHECK (length(k8s_cpu) <= 64),
    ADD COLUMN k8s_memory text CHECK (length(k8s_memory) <= 64);
