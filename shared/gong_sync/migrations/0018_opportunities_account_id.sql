-- The app reads an account's opportunities by the account's id: by its name, two accounts
-- with one name merged and a rename moved them. Kept as Salesforce holds it, like contacts'.
ALTER TABLE opportunities ADD COLUMN account_id text;
CREATE INDEX opportunities_by_account_id_and_stage ON opportunities (account_id, stage);
-- Stored rows have no account_id yet: the opportunity stream reads every row once more, a
-- backfill of that table alone that rewrites each stored row whose account_id it lacks.
DELETE FROM sync_watermarks WHERE source = 'opportunities' AND stream = 'opportunity';
