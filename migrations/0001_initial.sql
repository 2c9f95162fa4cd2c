-- Kiln's data model (DESIGN §3). Never edit this file once landed: add a new migration.

CREATE FUNCTION kiln_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- One notification per changed row, on channel 'kiln', so the reconcile loop and
-- the consoles of the affected user wake up. Changes that only move a lease or a
-- schedule are not news to anyone and are not announced (otherwise every lease
-- would wake every loop and every dashboard).
CREATE FUNCTION kiln_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_row jsonb;
    old_row jsonb;
    quiet text[] := ARRAY['lease_owner', 'lease_token', 'lease_until', 'next_attempt_at',
                          'observed_at', 'updated_at', 'last_active_at'];
BEGIN
    IF TG_OP = 'DELETE' THEN
        new_row := to_jsonb(OLD);
    ELSE
        new_row := to_jsonb(NEW);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_row := to_jsonb(OLD);
        IF (new_row - quiet) = (old_row - quiet) THEN
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify('kiln', json_build_object(
        'table', TG_TABLE_NAME,
        'op', TG_OP,
        'id', new_row ->> 'id',
        'project_id', new_row ->> 'project_id',
        'user_id', CASE WHEN TG_TABLE_NAME = 'users' THEN new_row ->> 'id' ELSE new_row ->> 'user_id' END
    )::text);
    RETURN NULL;
END $$;

CREATE TABLE kiln_meta (
    key        text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username    text NOT NULL CHECK (username ~ '^[a-z_][a-z0-9_.-]{0,31}$'),
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    disabled_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE identities (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider         text NOT NULL CHECK (provider IN ('password', 'ssh_key', 'github')),
    provider_user_id text NOT NULL,
    secret           text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    is_primary       boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_user_id)
);
CREATE INDEX identities_user_id ON identities (user_id);

-- Per-user settings and secrets. Exactly one of value / value_enc is set:
-- secrets are stored only encrypted.
CREATE TABLE user_configs (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key        text NOT NULL,
    value      text,
    value_enc  bytea,
    category   text NOT NULL DEFAULT 'general',
    is_secret  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, key),
    CHECK ((is_secret AND value IS NULL AND value_enc IS NOT NULL)
        OR (NOT is_secret AND value IS NOT NULL AND value_enc IS NULL))
);

CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9]{1,20}$'),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    status      text NOT NULL DEFAULT 'CREATING' CHECK (status IN
                ('CREATING', 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED',
                 'TERMINATING', 'TERMINATED', 'ERROR', 'PARTIAL')),
    template    text,
    git_repo    text,
    git_branch  text,
    env_version bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, slug)
);
CREATE UNIQUE INDEX projects_user_name_key ON projects (user_id, lower(name));

-- Columns shared by sandboxes and databases, repeated because each table is
-- leased on its own. `next_attempt_at` is the one schedule: every writer sets
-- it to when the row next needs the loop (now for an intent, a backoff after a
-- transient failure, now + observe interval once settled, infinity in ERROR),
-- so "needs work" is a single index range scan.
CREATE TABLE sandboxes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id          uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource_name       text NOT NULL UNIQUE CHECK (resource_name ~ '^[a-z0-9-]{1,63}$'),
    namespace           text NOT NULL DEFAULT '',
    desired             text NOT NULL DEFAULT 'RUNNING' CHECK (desired IN ('RUNNING', 'STOPPED', 'TERMINATED')),
    status              text NOT NULL DEFAULT 'CREATING' CHECK (status IN
                        ('CREATING', 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED',
                         'TERMINATING', 'TERMINATED', 'ERROR')),
    intent_seq          bigint NOT NULL DEFAULT 0,
    lease_owner         text,
    lease_token         uuid,
    lease_until         timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    observed_at         timestamptz,
    applied_env_version bigint NOT NULL DEFAULT 0,
    last_active_at      timestamptz,
    app_url             text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandboxes_next_attempt_at ON sandboxes (next_attempt_at);
CREATE INDEX sandboxes_project_id ON sandboxes (project_id);
CREATE INDEX sandboxes_lease_owner ON sandboxes (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE databases (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource_name   text NOT NULL UNIQUE CHECK (resource_name ~ '^[a-z0-9-]{1,63}$'),
    namespace       text NOT NULL DEFAULT '',
    desired         text NOT NULL DEFAULT 'RUNNING' CHECK (desired IN ('RUNNING', 'STOPPED', 'TERMINATED')),
    status          text NOT NULL DEFAULT 'CREATING' CHECK (status IN
                    ('CREATING', 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED',
                     'TERMINATING', 'TERMINATED', 'ERROR')),
    intent_seq      bigint NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_token     uuid,
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    observed_at     timestamptz,
    db_host         text,
    db_port         integer,
    db_name         text,
    db_user         text,
    password_enc    bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX databases_next_attempt_at ON databases (next_attempt_at);
CREATE INDEX databases_project_id ON databases (project_id);
CREATE INDEX databases_lease_owner ON databases (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE environments (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key        text NOT NULL CHECK (key ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    value      text,
    value_enc  bytea,
    category   text NOT NULL DEFAULT 'general',
    is_secret  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, key),
    CHECK ((is_secret AND value IS NULL AND value_enc IS NOT NULL)
        OR (NOT is_secret AND value IS NOT NULL AND value_enc IS NULL))
);

-- The audit trail outlives the project it describes.
CREATE TABLE events (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid REFERENCES projects (id) ON DELETE SET NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('project', 'sandbox', 'database')),
    from_status text,
    to_status   text,
    message     text NOT NULL DEFAULT '',
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_project_id_created_at ON events (project_id, created_at);
CREATE INDEX events_user_id_created_at ON events (user_id, created_at);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['kiln_meta', 'users', 'identities', 'user_configs', 'projects',
                             'sandboxes', 'databases', 'environments', 'events'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at()',
                       t || '_touch', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['users', 'identities', 'user_configs', 'projects',
                             'sandboxes', 'databases', 'environments', 'events'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION kiln_notify()',
                       t || '_notify', t);
    END LOOP;
END $$;
