-- A window re-read (`since` later than the watermark's lookback) must not move the watermark,
-- or the rows between them would never be read; it still records where it got to. So a
-- stream can have a resume position before it has a watermark.
ALTER TABLE sync_watermarks ALTER COLUMN watermark DROP NOT NULL;
