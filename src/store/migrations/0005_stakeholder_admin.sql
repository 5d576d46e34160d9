-- OpenMTE schema, version 5: a stakeholder account can be an administrator, who sees every
-- stakeholder's enrolees and the whole audit log through the portal.
ALTER TABLE stakeholders ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1));
