-- Where an unfinished run stopped inside a stream: the last (cursor, key) it committed. The
-- next run resumes there, exactly, instead of re-reading the lookback window; without it a
-- time-budgeted backfill through a large tie on _fivetran_synced would never finish.
ALTER TABLE sync_watermarks ADD COLUMN resume_after jsonb;
