-- OpenMTE schema, version 6: browser sessions with an idle expiry, and personal API tokens.
--
-- A session is a bearer login (POST /api/v1/login) or a browser sign-in (cookie). Every session
-- has an absolute expiry (expires_at); a browser session also ends after idle_seconds without a
-- request (last_used_at + idle_seconds), 0 meaning no idle expiry.
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'bearer'
  CHECK (kind IN ('bearer', 'browser'));
ALTER TABLE sessions ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN idle_seconds INTEGER NOT NULL DEFAULT 0 CHECK (idle_seconds >= 0);

-- Personal API tokens: named, long-lived bearer credentials for scripts, stored as SHA-256 of
-- the token text. Revoking one deletes its row (the audit log keeps the event).
CREATE TABLE api_tokens (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  stakeholder_id INTEGER NOT NULL REFERENCES stakeholders (id) ON DELETE CASCADE,
  name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
  token_hash     BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  created_at     INTEGER NOT NULL,
  last_used_at   INTEGER NOT NULL DEFAULT 0,
  expires_at     INTEGER NOT NULL DEFAULT 0,
  UNIQUE (stakeholder_id, name)
) STRICT;
