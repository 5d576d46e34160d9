-- mte: rebuilds tables
-- OpenMTE schema, version 2 (docs/architecture.md §5): a device has bootstrap credentials of one
-- or more RSPF kinds (TS-0003 §8.3.2.1 PPSK, §8.3.2.2 certificate), and the MTE holds the device
-- makers' CAs.
--
-- The marker line above makes the runner apply this file with foreign keys off (PRAGMA
-- foreign_keys cannot change inside a transaction) and run PRAGMA foreign_key_check before the
-- commit: `devices` loses its UNIQUE kpm_id column, which SQLite cannot drop, so the table is
-- rebuilt with SQLite's documented procedure (create the new table, copy, drop the old one,
-- rename the new one into place) while `enrolees` keeps referring to it by name.

-- One row per bootstrap credential. A KpmID compares case-sensitively (it is a TLS
-- psk_identity); the certificate kinds hold 64 lowercase hex characters, a SHA-256 of the DER
-- certificate (cert-sha256) or of its SubjectPublicKeyInfo (spki-sha256, RFC 6920 style). Only a
-- kpm credential has a secret: the Kpm sealed with aad "kpm|<device_id>" (docs/protocol.md §14.1).
CREATE TABLE device_credentials (
  device_id     TEXT NOT NULL REFERENCES devices (device_id),
  kind          TEXT NOT NULL CHECK (kind IN ('kpm', 'cert-sha256', 'spki-sha256')),
  credential_id TEXT NOT NULL,
  secret_sealed BLOB,
  PRIMARY KEY (kind, credential_id),
  CHECK ((kind = 'kpm') = (secret_sealed IS NOT NULL)),
  CHECK (kind = 'kpm' OR (length(credential_id) = 64
                          AND credential_id NOT GLOB '*[^0-9a-f]*'))
) STRICT;

CREATE INDEX device_credentials_by_device ON device_credentials (device_id);

INSERT INTO device_credentials (device_id, kind, credential_id, secret_sealed)
  SELECT device_id, 'kpm', kpm_id, kpm_sealed FROM devices;

-- The rebuild of `devices` without kpm_id and kpm_sealed. It has no indexes, triggers or views
-- of its own to recreate.
CREATE TABLE devices_v2 (
  device_id   TEXT    NOT NULL PRIMARY KEY,
  claim_hash  TEXT    NOT NULL,
  created_at  INTEGER NOT NULL
) STRICT;

INSERT INTO devices_v2 (device_id, claim_hash, created_at)
  SELECT device_id, claim_hash, created_at FROM devices;

DROP TABLE devices;

ALTER TABLE devices_v2 RENAME TO devices;

-- The device makers' CAs that the MEF trusts for the certificate RSPF (TS-0003 §8.3.2.2).
CREATE TABLE device_cas (
  name            TEXT    NOT NULL PRIMARY KEY,
  cert_pem        TEXT    NOT NULL,
  cert_sha256     TEXT    NOT NULL UNIQUE,
  ocsp_url        TEXT    NOT NULL DEFAULT '',
  crl_file        TEXT    NOT NULL DEFAULT '',
  max_chain_depth INTEGER NOT NULL CHECK (max_chain_depth BETWEEN 0 AND 8),
  ocsp_fail_open  INTEGER NOT NULL CHECK (ocsp_fail_open IN (0, 1)),
  created_at      INTEGER NOT NULL
) STRICT;
