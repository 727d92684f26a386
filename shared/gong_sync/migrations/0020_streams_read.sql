-- The streams each source has read: noted when a run resolves a declaration that reads them.
-- Unlike watermarks, a full refresh keeps them, so a source that has read a table only its
-- own declaration reads (Salesforce's opportunity) never falls back while it refreshes
-- (BigQueryReader.resolve). Run state: not the app reader's.
CREATE TABLE sync_streams_read (
    source        text NOT NULL,
    stream        text NOT NULL,
    first_read_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream)
);
REVOKE ALL ON sync_streams_read FROM gong_sync_reader;
