-- A password reset asked for by email address finds its accounts by the case-folded address,
-- through this index instead of reading every user.
CREATE INDEX users_email_lower_idx ON users (LOWER(email));
