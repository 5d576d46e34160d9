-- OpenMTE schema, version 7: the portal's login and claim failure counts, kept in the store so
-- that every portal process counts together, a restart forgets nothing, and an operator can clear
-- a lock (`mte admin lockout clear`). One row per key ("account:<name>", "address:<ip>",
-- "claim:<ip>", "claim-account:<name>"); rows that lock nothing and are old are dropped.
CREATE TABLE login_failures (
  key          TEXT    PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 300),
  count        INTEGER NOT NULL CHECK (count >= 0),
  window_start INTEGER NOT NULL,
  locked_until INTEGER NOT NULL,
  last_failure INTEGER NOT NULL,
  locks        INTEGER NOT NULL CHECK (locks >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX login_failures_last_failure ON login_failures (last_failure);
