-- Email verification, email change and password reset.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Single-use links sent by email. Only a SHA-256 of the token is stored; a used or
-- superseded token keeps its row (used_at) so that a second use is refused, not unknown.
CREATE TABLE email_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('password_reset', 'verify_email')),
    token_hash TEXT NOT NULL,
    -- For verify_email: the address the link proves (the pending new address on a change).
    email      TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    CONSTRAINT email_tokens_token_hash_unique UNIQUE (token_hash)
);

CREATE INDEX email_tokens_user_id_idx ON email_tokens (user_id, purpose);
