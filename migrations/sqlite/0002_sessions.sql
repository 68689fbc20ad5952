-- Sessions: a browser sign-in (cookie) or an API login. Only a SHA-256 hash of the session
-- token is stored, so a copy of the database cannot be replayed as cookies.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT    NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    persistent   BOOLEAN NOT NULL DEFAULT FALSE,
    ip           TEXT,
    user_agent   TEXT,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    CONSTRAINT sessions_token_hash_unique UNIQUE (token_hash)
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
