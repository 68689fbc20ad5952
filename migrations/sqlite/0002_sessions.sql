-- Sessions: a browser sign-in (kind 'browser', found by its cookie) or an API login (kind
-- 'api', a refresh-token family). Every access token names its session, so deleting the row
-- revokes at once. Only SHA-256 hashes of cookie and refresh tokens are stored.
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT        NOT NULL CHECK (kind IN ('browser', 'api')),
    token_hash      TEXT,
    persistent      BOOLEAN     NOT NULL DEFAULT FALSE,
    ip              TEXT,
    user_agent      TEXT,
    created_at      TEXT    NOT NULL,
    last_used_at    TEXT    NOT NULL,
    -- Absolute end, and the end if unused (pushed forward on use).
    expires_at      TEXT    NOT NULL,
    idle_expires_at TEXT    NOT NULL,
    CONSTRAINT sessions_token_hash_unique UNIQUE (token_hash)
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens of an API session. A used token stays (with used_at) so that presenting
-- it again is recognised as reuse and ends the whole family.
CREATE TABLE refresh_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER     NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash TEXT        NOT NULL,
    created_at TEXT    NOT NULL,
    used_at    TEXT   ,
    CONSTRAINT refresh_tokens_token_hash_unique UNIQUE (token_hash)
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- The audit trail: what happened to whom, from where. Never a secret.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT        NOT NULL,
    user_id    INTEGER     REFERENCES users (id) ON DELETE SET NULL,
    actor_id   INTEGER     REFERENCES users (id) ON DELETE SET NULL,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT,
    created_at TEXT    NOT NULL
);

CREATE INDEX events_user_id_idx ON events (user_id, id);
