-- The database connection a sandbox's DATABASE_URL was last built from
-- (host, port, database and user as a JSON array; NULL: none, or not known).
-- A database whose connection details are first written after its
-- sandbox already started with those very details then needs no env sync
-- of that sandbox: without this, the check could only see a sandbox
-- written in the same batch, and most creates paid an extra sync.
ALTER TABLE sandboxes ADD COLUMN applied_database text;
