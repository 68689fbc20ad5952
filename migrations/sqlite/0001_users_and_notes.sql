-- Users: `username` is what the user typed (NFKC-normalised); `username_key` is its
-- case-folded form, and the database keeps it unique. Timestamps are RFC 3339 text.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    username_key    TEXT    NOT NULL,
    email           TEXT,
    full_name       TEXT,
    hashed_password TEXT    NOT NULL,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    CONSTRAINT users_username_key_unique UNIQUE (username_key)
);

CREATE TABLE notes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text       TEXT    NOT NULL,
    completed  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT    NOT NULL
);

CREATE INDEX notes_owner_id_idx ON notes (owner_id, id);
