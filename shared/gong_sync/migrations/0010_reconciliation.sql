-- The last reconciliation of each source (`verify`, and `--fix`): when, and the drift it
-- found, fixed and left (the scheduled daily verify records it here; `status` shows it).
ALTER TABLE sync_status
    ADD COLUMN last_verified_at timestamptz,
    ADD COLUMN last_verify jsonb;
