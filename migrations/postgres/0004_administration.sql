-- Superusers may use the admin console and the /admin/ API.
ALTER TABLE users ADD COLUMN is_superuser BOOLEAN NOT NULL DEFAULT FALSE;

-- Rows brought in by `gatehouse import` from the tutorial's database: which source row
-- became which local row, so that running the import again skips what it already brought.
-- `source` is the tutorial's table ('users' or 'notes'); a deleted local row frees nothing.
CREATE TABLE imported_rows (
    source      TEXT        NOT NULL CHECK (source IN ('users', 'notes')),
    source_id   BIGINT      NOT NULL,
    local_id    BIGINT,
    imported_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, source_id)
);
