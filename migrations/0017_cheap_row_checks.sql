-- Issue 23: what Postgres does for every row the reconcile loop writes.
-- A profile of `kiln bench reconcile` (perf, one replica) put 5.7% of the
-- server's CPU in regular expressions and 3% in json_build_object:
--
-- 1. Postgres checks every CHECK constraint of a row on every UPDATE,
--    whichever columns changed, so each lease and each outcome re-matched
--    the resource's name, and each re-aggregation the project's slug. A
--    bounded repetition (`{1,63}`) is what made those dear: Postgres'
--    engine unrolls it, and a match cost 3.7 µs where `+` with a length
--    test costs 0.25 µs (a million names of that shape: 3.76 s against
--    0.25 s). The sets accepted are the same: every character the class
--    allows is one byte, so length() counts what the repetition counted.
--    agent_states is written by every hook call of every agent.
ALTER TABLE sandboxes DROP CONSTRAINT sandboxes_resource_name_check,
    ADD CONSTRAINT sandboxes_resource_name_check
        CHECK (resource_name ~ '^[a-z0-9-]+$' AND length(resource_name) <= 63);
ALTER TABLE databases DROP CONSTRAINT databases_resource_name_check,
    ADD CONSTRAINT databases_resource_name_check
        CHECK (resource_name ~ '^[a-z0-9-]+$' AND length(resource_name) <= 63),
    DROP CONSTRAINT databases_pooled_from_check,
    ADD CONSTRAINT databases_pooled_from_check
        CHECK (pooled_from ~ '^[a-z0-9-]+$' AND length(pooled_from) <= 63);
ALTER TABLE projects DROP CONSTRAINT projects_slug_check,
    ADD CONSTRAINT projects_slug_check
        CHECK (slug ~ '^[a-z0-9]+$' AND length(slug) <= 20);
ALTER TABLE agent_states DROP CONSTRAINT agent_states_session_check,
    ADD CONSTRAINT agent_states_session_check
        CHECK (session ~ '^[a-z0-9-]*$' AND length(session) <= 20);

-- 2. The change notification's payload, written out rather than built by
--    json_build_object (which looks up each argument's type and escapes
--    each string): every value in it is a table name, an operation or a
--    uuid, none of which needs escaping. The payload's fields and values
--    are kiln_notify's, as before; only the spacing differs.
CREATE OR REPLACE FUNCTION kiln_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    project text := 'null';
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    -- A project is the project: its payload has no project_id.
    IF TG_TABLE_NAME <> 'projects' THEN
        project := coalesce('"' || r.project_id || '"', 'null');
    END IF;
    PERFORM pg_notify('kiln',
        '{"table":"' || TG_TABLE_NAME || '","op":"' || TG_OP
        || '","id":' || coalesce('"' || r.id || '"', 'null')
        || ',"project_id":' || project
        || ',"user_id":' || coalesce('"' || r.user_id || '"', 'null') || '}');
    RETURN NULL;
END $$;
