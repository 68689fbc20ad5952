-- The admin console's search finds the users whose name, address or full name contains the
-- query, case-folded (`LIKE '%...%'`). A B-tree index cannot answer that, so each search read
-- every user: about 2 s with 1,000,000. Trigram indexes (pg_trgm, which PostgreSQL ships and,
-- from version 13, lets any role with CREATE on the database install) answer a search for a
-- rare name in milliseconds.
--
-- Where the extension cannot be installed (a role without the CREATE privilege, a server
-- without the contributed modules) the search keeps working by reading every user, and the
-- migration says why in a warning, in the service's log, rather than stopping it from starting.
-- The migration then counts as applied: run the three statements below by hand once the
-- extension can be installed.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX users_username_key_trgm_idx ON users USING gin (username_key gin_trgm_ops);
    CREATE INDEX users_email_trgm_idx ON users USING gin (LOWER(COALESCE(email, '')) gin_trgm_ops);
    CREATE INDEX users_full_name_trgm_idx ON users USING gin (LOWER(COALESCE(full_name, '')) gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'the user search stays unindexed: %', SQLERRM;
END $$;
-- Expression indexes have no statistics until the next ANALYZE.
ANALYZE users;
