-- A read-only role for the sales-coaching app: SELECT on the synced tables, and on every
-- table later migrations create (default privileges of the migrating user). The app logs in
-- as a user that is a member of it (README, "The coaching app's read-only user"); run
-- state and dead letters (which hold raw source records) stay out of its reach.
DO $$
BEGIN
    CREATE ROLE gong_sync_reader NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles belong to the server: another database's migration made it already
END
$$;

GRANT SELECT ON calls, call_speakers, transcripts, call_opportunities, emails, opportunities,
    contacts TO gong_sync_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO gong_sync_reader;
