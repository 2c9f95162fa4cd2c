-- Templates a new project can start from (issue 19): global ones an admin
-- added (`kiln template add`, user_id NULL) and each user's own (`templates
-- save`), kept as their checked TOML text. Built-in templates ship in the
-- binary and are not rows.
CREATE TABLE templates (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    body        text NOT NULL CHECK (length(body) <= 65536),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX templates_global_name ON templates (name) WHERE user_id IS NULL;
CREATE UNIQUE INDEX templates_user_name ON templates (user_id, name) WHERE user_id IS NOT NULL;

-- What a project's sandbox was created with from its template: the command
-- its default session runs (NULL: the server's), and a setup script run
-- once after its clone.
ALTER TABLE projects ADD COLUMN session_command text CHECK (length(session_command) <= 1024);
ALTER TABLE projects ADD COLUMN setup_script text CHECK (length(setup_script) <= 16384);

CREATE TRIGGER templates_touch BEFORE UPDATE ON templates
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
CREATE TRIGGER templates_notify AFTER INSERT OR UPDATE OR DELETE ON templates
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();
