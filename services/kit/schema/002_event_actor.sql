-- Who asked for each event (the verified caller's subject; '' for the system's own work):
-- the audit trail of admin, host and buyer actions, written with the event.
ALTER TABLE events ADD COLUMN IF NOT EXISTS actor text NOT NULL DEFAULT '';
