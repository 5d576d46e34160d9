-- OpenMTE schema, version 4: every outbox item records when it was written, so that the portal's
-- health report can give the age of the oldest undelivered one. Items written before this
-- version take their first attempt time, which is when they were written unless they have been
-- retried (then the age shown is a lower bound).
ALTER TABLE outbox ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;

UPDATE outbox SET created_at = next_attempt_at;
