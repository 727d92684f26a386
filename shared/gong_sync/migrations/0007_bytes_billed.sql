-- What BigQuery billed. sync_status keeps the last run's total; sync_runs keeps every run's
-- (35 days), so `gong-sync status` sums the last 24 hours per source and projects a month.
ALTER TABLE sync_status ADD COLUMN bytes_billed bigint NOT NULL DEFAULT 0;

CREATE TABLE sync_runs (
    run_id                  text PRIMARY KEY,
    source                  text NOT NULL,
    finished_at             timestamptz NOT NULL DEFAULT now(),
    status                  text NOT NULL,
    rows_read               bigint NOT NULL DEFAULT 0,
    bytes_processed         bigint NOT NULL DEFAULT 0,
    bytes_billed            bigint NOT NULL DEFAULT 0,
    bytes_billed_by_stream  jsonb
);

CREATE INDEX sync_runs_by_source_and_time ON sync_runs (source, finished_at);
