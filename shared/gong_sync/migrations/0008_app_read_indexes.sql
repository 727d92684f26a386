-- What the sales-coaching app reads, and the index each read needs (its queries, run under
-- EXPLAIN at volume, are in tests/test_app_queries.py). Already served by primary keys:
-- a call's transcript in order (gong_call_id, sequence_number), a call's speakers
-- (gong_call_id, speaker_id), a call's opportunities (gong_call_id, gong_opportunity_id);
-- an opportunity's calls by call_opportunities_opportunity (0001), contacts by email (0006).

-- A rep's calls, newest first, within a date range.
CREATE INDEX calls_by_rep_and_date ON calls (primary_user_id, started_at);
-- An opportunity's emails in order, and emails within a date range.
CREATE INDEX emails_by_opportunity_and_date ON emails (opportunity_id, sent_at);
CREATE INDEX emails_by_date ON emails (sent_at);
-- An account's opportunities, by stage.
CREATE INDEX opportunities_by_account_and_stage ON opportunities (account_name, stage);
