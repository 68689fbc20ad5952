-- Consecutive failed logins per account name, so the slow-down holds across restarts and
-- instances. Keyed by the SHA-256 of the case-folded name that was typed, whether or not an
-- account has it: unknown names are throttled exactly like known ones (nothing reveals which
-- exist), and a password typed into the username field is never stored in clear.
CREATE TABLE login_throttle (
    name_hash       TEXT        PRIMARY KEY,
    failures        INTEGER     NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX events_kind_idx ON events (kind, created_at);
