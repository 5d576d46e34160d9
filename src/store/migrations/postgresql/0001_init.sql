-- OpenMTE schema for PostgreSQL, version 1 (docs/architecture.md §5). Applied inside one
-- transaction by the store, which records the version in schema_version.
--
-- This backend has no databases from before it existed, so version 1 is the whole schema the
-- SQLite migrations 0001..0008 build, in one file. The two backends' migrations are numbered on
-- their own: a later schema change adds one file to each, src/store/migrations/NNNN_<name>.sql
-- for SQLite (its next number) and src/store/migrations/postgresql/NNNN_<name>.sql here (0002,
-- 0003, ...), and the conformance suite, which runs on both, shows that they agree.
--
-- Ids are identity columns, never reused (as SQLite's AUTOINCREMENT); times, counters and ids are
-- BIGINT, blobs BYTEA. Secrets appear only sealed (*_sealed) or hashed (*_hash).

-- Manufacturer manifest (docs/protocol.md §3).
CREATE TABLE devices (
  device_id   TEXT   NOT NULL PRIMARY KEY,
  claim_hash  TEXT   NOT NULL,
  created_at  BIGINT NOT NULL
);

-- One row per bootstrap credential (TS-0003 §8.3.2.1 PPSK, §8.3.2.2 certificate). A KpmID
-- compares case-sensitively (it is a TLS psk_identity); the certificate kinds hold 64 lowercase
-- hex characters. Only a kpm credential has a secret: the Kpm sealed with aad "kpm|<device_id>".
CREATE TABLE device_credentials (
  device_id     TEXT  NOT NULL REFERENCES devices (device_id),
  kind          TEXT  NOT NULL CHECK (kind IN ('kpm', 'cert-sha256', 'spki-sha256')),
  credential_id TEXT  NOT NULL,
  secret_sealed BYTEA,
  PRIMARY KEY (kind, credential_id),
  CHECK ((kind = 'kpm') = (secret_sealed IS NOT NULL)),
  CHECK (kind = 'kpm' OR credential_id ~ '^[0-9a-f]{64}$')
);

CREATE INDEX device_credentials_by_device ON device_credentials (device_id);

-- The device makers' CAs that the MEF trusts for the certificate RSPF (TS-0003 §8.3.2.2).
CREATE TABLE device_cas (
  name            TEXT    NOT NULL PRIMARY KEY,
  cert_pem        TEXT    NOT NULL,
  cert_sha256     TEXT    NOT NULL UNIQUE,
  ocsp_url        TEXT    NOT NULL DEFAULT '',
  crl_file        TEXT    NOT NULL DEFAULT '',
  max_chain_depth INTEGER NOT NULL CHECK (max_chain_depth BETWEEN 0 AND 8),
  ocsp_fail_open  BOOLEAN NOT NULL,
  created_at      BIGINT  NOT NULL
);

CREATE TABLE stakeholders (
  id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE,
  password_hash TEXT    NOT NULL,
  created_at    BIGINT  NOT NULL,
  is_admin      BOOLEAN NOT NULL DEFAULT false
);

-- Portal sessions, keyed by the SHA-256 of the session token: a bearer login or a browser sign-in,
-- with an absolute expiry and, for browsers, an idle expiry (last_used_at + idle_seconds; 0 = none).
CREATE TABLE sessions (
  token_hash     BYTEA  NOT NULL PRIMARY KEY,
  stakeholder_id BIGINT NOT NULL REFERENCES stakeholders (id) ON DELETE CASCADE,
  expires_at     BIGINT NOT NULL,
  kind           TEXT   NOT NULL DEFAULT 'bearer' CHECK (kind IN ('bearer', 'browser')),
  created_at     BIGINT NOT NULL DEFAULT 0,
  last_used_at   BIGINT NOT NULL DEFAULT 0,
  idle_seconds   BIGINT NOT NULL DEFAULT 0 CHECK (idle_seconds >= 0)
);

CREATE INDEX sessions_by_stakeholder ON sessions (stakeholder_id);

-- Personal API tokens, stored as SHA-256 of the token text. Revoking one deletes its row.
CREATE TABLE api_tokens (
  id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stakeholder_id BIGINT NOT NULL REFERENCES stakeholders (id) ON DELETE CASCADE,
  name           TEXT   NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
  token_hash     BYTEA  NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
  created_at     BIGINT NOT NULL,
  last_used_at   BIGINT NOT NULL DEFAULT 0,
  expires_at     BIGINT NOT NULL DEFAULT 0,
  UNIQUE (stakeholder_id, name)
);

-- The MTE Enrolee Database: one entry per device. A Flow B entry (seed 8.y.4 step 6) may have no
-- device yet (NULL); the device authenticated by the inner RSPF is recorded on it at enrolment.
CREATE TABLE enrolees (
  id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stakeholder_id BIGINT NOT NULL REFERENCES stakeholders (id),
  device_id      TEXT   UNIQUE REFERENCES devices (device_id),
  label          TEXT   NOT NULL,
  device_info    TEXT   NOT NULL DEFAULT '',
  state          TEXT   NOT NULL CHECK (state IN ('pending', 'enrolled', 'revoked')),
  generation     BIGINT NOT NULL CHECK (generation >= 0),
  rspf           TEXT   NOT NULL,
  ke_id          TEXT   NOT NULL,
  ke_sealed      BYTEA  NOT NULL,
  ke_expires_at  BIGINT NOT NULL,
  maf_delivery   TEXT   NOT NULL CHECK (maf_delivery IN ('none', 'pending', 'delivered')),
  created_at     BIGINT NOT NULL,
  updated_at     BIGINT NOT NULL,
  enrolled_at    BIGINT NOT NULL
);

CREATE INDEX enrolees_by_stakeholder ON enrolees (stakeholder_id, id);

-- Credential-IDs of an enrolee's current enrolment (TS-0003 §10.4), in order.
CREATE TABLE enrolee_credential_ids (
  enrolee_id    BIGINT NOT NULL REFERENCES enrolees (id) ON DELETE CASCADE,
  position      BIGINT NOT NULL,
  credential_id TEXT   NOT NULL,
  PRIMARY KEY (enrolee_id, position)
);

-- Durable delivery queue to enrolment targets, written in the enrolment transaction. created_at
-- is when an item was written (the health report's age of the oldest undelivered one).
CREATE TABLE outbox (
  id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  enrolee_id      BIGINT NOT NULL REFERENCES enrolees (id),
  generation      BIGINT NOT NULL,
  target          TEXT   NOT NULL,
  payload_sealed  BYTEA  NOT NULL,
  attempts        BIGINT NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  delivered_at    BIGINT NOT NULL DEFAULT 0,
  last_error      TEXT   NOT NULL DEFAULT '',
  created_at      BIGINT NOT NULL DEFAULT 0,
  UNIQUE (enrolee_id, generation, target)
);

-- The undelivered items, oldest first: what DueOutbox and ClaimDueOutbox scan.
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at = 0;

-- MAF key store. Not tied to enrolees by a foreign key: a MAF may run on its own database. A
-- KmID is unique and looked up ignoring ASCII case: lower() under the "C" collation folds A-Z
-- only, as SQLite's NOCASE does, whatever the database's locale.
CREATE TABLE maf_credentials (
  id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  km_id       TEXT   NOT NULL,
  km_sealed   BYTEA  NOT NULL,
  enrolee_id  BIGINT NOT NULL,
  generation  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  UNIQUE (enrolee_id, generation)
);

CREATE UNIQUE INDEX maf_credentials_by_km_id ON maf_credentials (lower(km_id COLLATE "C"));

-- Enrolment-Tokens (seed 8.y.4 step 7), stored only as the SHA-256 of the 256-bit random token.
-- A token is spent by the commit of the enrolment it started (one conditional UPDATE).
CREATE TABLE tokens (
  id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  enrolee_id  BIGINT NOT NULL REFERENCES enrolees (id),
  token_hash  BYTEA  NOT NULL UNIQUE,
  state       TEXT   NOT NULL CHECK (state IN ('active', 'spent', 'revoked')),
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL,
  spent_at    BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX tokens_by_enrolee ON tokens (enrolee_id, state);

-- The MAF's high-water mark per enrolee for retirements without a new credential.
CREATE TABLE maf_retired (
  enrolee_id  BIGINT NOT NULL PRIMARY KEY,
  generation  BIGINT NOT NULL
);

-- The portal's login and claim failure counts, one row per key ("account:<name>", ...).
CREATE TABLE login_failures (
  key          TEXT   NOT NULL PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 300),
  count        BIGINT NOT NULL CHECK (count >= 0),
  window_start BIGINT NOT NULL,
  locked_until BIGINT NOT NULL,
  last_failure BIGINT NOT NULL,
  locks        BIGINT NOT NULL CHECK (locks >= 0)
);

CREATE INDEX login_failures_last_failure ON login_failures (last_failure);

-- The portal's optional second factor, TOTP (RFC 6238): the secret sealed under the KEK with
-- associated data "totp|<stakeholder id>", confirmed by the first code, and the highest time step
-- accepted so far; recovery codes as SHA-256 of their 10 random octets, deleted when used.
CREATE TABLE totp_secrets (
  stakeholder_id BIGINT  NOT NULL PRIMARY KEY REFERENCES stakeholders (id) ON DELETE CASCADE,
  secret_sealed  BYTEA   NOT NULL,
  confirmed      BOOLEAN NOT NULL DEFAULT false,
  last_step      BIGINT  NOT NULL DEFAULT 0 CHECK (last_step >= 0),
  created_at     BIGINT  NOT NULL
);

CREATE TABLE recovery_codes (
  stakeholder_id BIGINT NOT NULL REFERENCES totp_secrets (stakeholder_id) ON DELETE CASCADE,
  code_hash      BYTEA  NOT NULL CHECK (octet_length(code_hash) = 32),
  PRIMARY KEY (stakeholder_id, code_hash)
);

-- Append-only audit trail (docs/conventions.md §3): no code path updates or deletes, and the
-- triggers refuse anyone who tries, TRUNCATE included.
CREATE TABLE audit (
  id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at      BIGINT NOT NULL,
  actor   TEXT   NOT NULL,
  action  TEXT   NOT NULL,
  subject TEXT   NOT NULL,
  detail  TEXT   NOT NULL
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit is append-only';
END;
$$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
