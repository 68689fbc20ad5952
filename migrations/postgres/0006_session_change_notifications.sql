-- Every instance keeps live sessions in memory. These triggers tell all of them, through
-- NOTIFY, of each change that can end a session or alter what a signed-in request sees of its
-- user, so that a revocation takes effect on the next request everywhere. Payloads:
-- 's:<session id>', 'u:<user id>', or '*' (forget everything). NOTIFY is sent at commit.
CREATE FUNCTION notify_session_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('gatehouse_session_changes', '*');
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('gatehouse_session_changes', 'u:' || OLD.id);
    ELSE
        PERFORM pg_notify('gatehouse_session_changes', 's:' || OLD.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_deleted AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION notify_session_change();

-- A session in use only moves last_used_at and idle_expires_at forward (at most once a
-- minute); an instance holding the older copy asks the database once its copy looks idle.
-- Anything else can end the session or change whose it is.
CREATE TRIGGER sessions_changed AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN (NEW.idle_expires_at < OLD.idle_expires_at
          OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
          OR NEW.user_id IS DISTINCT FROM OLD.user_id
          OR NEW.kind IS DISTINCT FROM OLD.kind
          OR NEW.persistent IS DISTINCT FROM OLD.persistent
          OR NEW.token_hash IS DISTINCT FROM OLD.token_hash)
    EXECUTE FUNCTION notify_session_change();

CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_session_change();

CREATE TRIGGER sessions_truncated AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_session_change();

CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION notify_session_change();
