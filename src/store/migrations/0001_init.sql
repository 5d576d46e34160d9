-- OpenMTE schema, version 1 (docs/architecture.md §5). Applied inside one transaction by the store; the
-- store records the version in schema_version. Tables are STRICT so that a column always holds
-- the type its reader expects. Secrets appear only sealed (*_sealed) or hashed (*_hash).

-- Manufacturer manifest (docs/protocol.md §3).
CREATE TABLE devices (
  device_id   TEXT    NOT NULL PRIMARY KEY,
  kpm_id      TEXT    NOT NULL UNIQUE,
  kpm_sealed  BLOB    NOT NULL,
  claim_hash  TEXT    NOT NULL,
  created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE stakeholders (
  id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  name          TEXT    NOT NULL UNIQUE,
  password_hash TEXT    NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;

-- Portal sessions, keyed by the SHA-256 of the session token.
CREATE TABLE sessions (
  token_hash     BLOB    NOT NULL PRIMARY KEY,
  stakeholder_id INTEGER NOT NULL REFERENCES stakeholders (id) ON DELETE CASCADE,
  expires_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_by_stakeholder ON sessions (stakeholder_id);

-- The MTE Enrolee Database: one entry per device. A Flow B entry (seed 8.y.4 step 6) may have no
-- device yet (NULL); the device authenticated by the inner RSPF is recorded on it at enrolment.
CREATE TABLE enrolees (
  id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  stakeholder_id INTEGER NOT NULL REFERENCES stakeholders (id),
  device_id      TEXT    UNIQUE REFERENCES devices (device_id),
  label          TEXT    NOT NULL,
  device_info    TEXT    NOT NULL DEFAULT '',
  state          TEXT    NOT NULL CHECK (state IN ('pending', 'enrolled')),
  generation     INTEGER NOT NULL CHECK (generation >= 0),
  rspf           TEXT    NOT NULL,
  ke_id          TEXT    NOT NULL,
  ke_sealed      BLOB    NOT NULL,
  ke_expires_at  INTEGER NOT NULL,
  maf_delivery   TEXT    NOT NULL CHECK (maf_delivery IN ('none', 'pending', 'delivered')),
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  enrolled_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX enrolees_by_stakeholder ON enrolees (stakeholder_id, id);

-- Credential-IDs of an enrolee's current enrolment (TS-0003 §10.4), in order.
CREATE TABLE enrolee_credential_ids (
  enrolee_id    INTEGER NOT NULL REFERENCES enrolees (id) ON DELETE CASCADE,
  position      INTEGER NOT NULL,
  credential_id TEXT    NOT NULL,
  PRIMARY KEY (enrolee_id, position)
) STRICT;

-- Durable delivery queue to enrolment targets, written in the enrolment transaction.
CREATE TABLE outbox (
  id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  enrolee_id      INTEGER NOT NULL REFERENCES enrolees (id),
  generation      INTEGER NOT NULL,
  target          TEXT    NOT NULL,
  payload_sealed  BLOB    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  delivered_at    INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT    NOT NULL DEFAULT '',
  UNIQUE (enrolee_id, generation, target)
) STRICT;

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at = 0;

-- MAF key store. Not tied to enrolees by a foreign key: a MAF may run on its own database.
CREATE TABLE maf_credentials (
  id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  km_id       TEXT    NOT NULL UNIQUE COLLATE NOCASE,
  km_sealed   BLOB    NOT NULL,
  enrolee_id  INTEGER NOT NULL,
  generation  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  UNIQUE (enrolee_id, generation)
) STRICT;

-- Enrolment-Tokens (seed 8.y.4 step 7), stored only as the SHA-256 of the 256-bit random token.
-- A token is spent by the commit of the enrolment it started (one conditional UPDATE).
CREATE TABLE tokens (
  id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  enrolee_id  INTEGER NOT NULL REFERENCES enrolees (id),
  token_hash  BLOB    NOT NULL UNIQUE,
  state       TEXT    NOT NULL CHECK (state IN ('active', 'spent', 'revoked')),
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  spent_at    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX tokens_by_enrolee ON tokens (enrolee_id, state);

-- The MAF's high-water mark per enrolee for retirements without a new credential (a
-- re-enrolment that asked for no MAF enrolment): credentials of older generations stay gone.
CREATE TABLE maf_retired (
  enrolee_id  INTEGER NOT NULL PRIMARY KEY,
  generation  INTEGER NOT NULL
) STRICT;

-- Append-only audit trail (docs/conventions.md §3): no code path updates or deletes, and the triggers
-- refuse anyone who tries.
CREATE TABLE audit (
  id      INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  at      INTEGER NOT NULL,
  actor   TEXT    NOT NULL,
  action  TEXT    NOT NULL,
  subject TEXT    NOT NULL,
  detail  TEXT    NOT NULL
) STRICT;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only');
END;
