-- mte: rebuilds tables
-- OpenMTE schema, version 3 (docs/architecture.md §5): an enrolee can be revoked. A revoked
-- enrolee has no valid Ke, its tokens are revoked, the MAF is told to retire its Km through the
-- outbox, and the MEF refuses its device until the stakeholder issues a new Enrolment-Token.
--
-- SQLite cannot change a CHECK constraint in place, so `enrolees` is rebuilt with the documented
-- procedure (see 0002) while tokens, outbox and enrolee_credential_ids keep referring to it by
-- name; the marker line makes the runner apply it with foreign keys off and check them before
-- the commit.

CREATE TABLE enrolees_v3 (
  id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  stakeholder_id INTEGER NOT NULL REFERENCES stakeholders (id),
  device_id      TEXT    UNIQUE REFERENCES devices (device_id),
  label          TEXT    NOT NULL,
  device_info    TEXT    NOT NULL DEFAULT '',
  state          TEXT    NOT NULL CHECK (state IN ('pending', 'enrolled', 'revoked')),
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

INSERT INTO enrolees_v3 (id, stakeholder_id, device_id, label, device_info, state, generation,
                         rspf, ke_id, ke_sealed, ke_expires_at, maf_delivery, created_at,
                         updated_at, enrolled_at)
  SELECT id, stakeholder_id, device_id, label, device_info, state, generation, rspf, ke_id,
         ke_sealed, ke_expires_at, maf_delivery, created_at, updated_at, enrolled_at
  FROM enrolees;

-- Ids are never reused (AUTOINCREMENT): the new table continues the old one's sequence.
UPDATE sqlite_sequence
  SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'enrolees'))
  WHERE name = 'enrolees_v3';

DROP TABLE enrolees;

ALTER TABLE enrolees_v3 RENAME TO enrolees;

CREATE INDEX enrolees_by_stakeholder ON enrolees (stakeholder_id, id);
