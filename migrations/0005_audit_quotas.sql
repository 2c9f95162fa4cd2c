-- The audit trail (DESIGN §3): one row per gated console action that
-- changes something or fails, per sign-in attempt, per attach start and end.
-- Append-only from Kiln's side: a trigger refuses every UPDATE and every
-- DELETE except retention's (which sets kiln.audit_retention for its own
-- transaction only), and TRUNCATE. No secret value is ever written here: an
-- env set records the key, never the value.
CREATE TABLE audit (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    -- The account acted as (NULL: a sign-in under a name that has none).
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The name as given (escaped and cut short by Kiln before it gets here).
    username        text NOT NULL,
    -- The operator's `kiln` command acting on the user's behalf.
    operator        boolean NOT NULL DEFAULT false,
    front           text NOT NULL,
    source          text,
    key_fingerprint text,
    method          text,
    action          text NOT NULL,
    project         text,
    result          text NOT NULL,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX audit_user_id_at ON audit (user_id, at);
CREATE INDEX audit_at ON audit (at);

CREATE FUNCTION kiln_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('kiln.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION kiln_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_audit_append_only();

-- Limits per user, set by an admin (`kiln quota set`). NULL: no limit.
-- Checked in the same transaction as the create or start that would pass
-- them, under a per-owner advisory lock.
CREATE TABLE quotas (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    max_projects integer CHECK (max_projects >= 0),
    max_running  integer CHECK (max_running >= 0),
    -- Kubernetes: the total CPU (millicores) and memory (bytes) the
    -- owner's running sandboxes may request.
    max_cpu_millis   bigint CHECK (max_cpu_millis >= 0),
    max_memory_bytes bigint CHECK (max_memory_bytes >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER quotas_touch BEFORE UPDATE ON quotas
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
CREATE TRIGGER quotas_notify AFTER INSERT OR UPDATE OR DELETE ON quotas
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();

-- Teams. A team is an account (a `users` row with role 'team', which has
-- no identity and so cannot sign in), as an organization is on GitHub: its
-- projects, their resources, env, events and quota are keyed by its id
-- exactly as a user's are, and it shares the users' namespace of names.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'member', 'team'));

CREATE TABLE team_members (
    team_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_id ON team_members (user_id);
CREATE TRIGGER team_members_touch BEFORE UPDATE ON team_members
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();
-- Announced under the member's id: their dashboards and attaches re-check.
CREATE TRIGGER team_members_notify AFTER INSERT OR UPDATE OR DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION kiln_notify();
