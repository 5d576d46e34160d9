-- OpenMTE schema, version 8: the portal's optional second factor, TOTP (RFC 6238), with
-- single-use recovery codes.
--
-- secret_sealed is the 20-octet TOTP secret sealed under the KEK with associated data
-- "totp|<stakeholder id>". A secret is unconfirmed from setup until the first code from the
-- authenticator app is given; only a confirmed one is asked for at sign-in. last_step is the
-- highest time step accepted so far: a code of that step or an earlier one is refused, so a code
-- is good once. Recovery codes are stored as SHA-256 of their 10 random octets; using one
-- deletes it.
CREATE TABLE totp_secrets (
  stakeholder_id INTEGER PRIMARY KEY REFERENCES stakeholders (id) ON DELETE CASCADE,
  secret_sealed  BLOB    NOT NULL,
  confirmed      INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
  last_step      INTEGER NOT NULL DEFAULT 0 CHECK (last_step >= 0),
  created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
  stakeholder_id INTEGER NOT NULL REFERENCES totp_secrets (stakeholder_id) ON DELETE CASCADE,
  code_hash      BLOB    NOT NULL CHECK (length(code_hash) = 32),
  PRIMARY KEY (stakeholder_id, code_hash)
) STRICT, WITHOUT ROWID;
