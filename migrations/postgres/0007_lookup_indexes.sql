-- A password reset asked for by email address finds its accounts by the case-folded address,
-- in id order, through this index instead of reading every user.
CREATE INDEX users_email_lower_idx ON users (LOWER(email), id);
-- An expression index has no statistics until the next ANALYZE; without them the planner may
-- prefer reading users in id order for an address nobody has.
ANALYZE users;

-- Housekeeping finds the stale failure counts by their time instead of reading them all.
CREATE INDEX login_throttle_last_failure_at_idx ON login_throttle (last_failure_at);
