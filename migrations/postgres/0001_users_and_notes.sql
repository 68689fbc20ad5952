-- Users: `username` is what the user typed (NFKC-normalised); `username_key` is its
-- case-folded form, and the database keeps it unique.
CREATE TABLE users (
    id              BIGSERIAL PRIMARY KEY,
    username        TEXT        NOT NULL,
    username_key    TEXT        NOT NULL,
    email           TEXT,
    full_name       TEXT,
    hashed_password TEXT        NOT NULL,
    disabled        BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_username_key_unique UNIQUE (username_key)
);

CREATE TABLE notes (
    id         BIGSERIAL PRIMARY KEY,
    owner_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text       TEXT        NOT NULL,
    completed  BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX notes_owner_id_idx ON notes (owner_id, id);
