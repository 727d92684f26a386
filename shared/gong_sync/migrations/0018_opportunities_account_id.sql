-- The app reads an account's opportunities by the account's id: by its name, two accounts
-- with one name merged and a rename moved them. Kept as Salesforce holds it, like contacts'.
ALTER TABLE opportunities ADD COLUMN account_id text;
CREATE INDEX opportunities_by_account_id_and_stage ON opportunities (account_id, stage);

-- Streams to read again from their start, because what they drive gained a column. The next
-- run of the source forgets their watermark and position under the source's lock: done here,
-- a run of the previous version still going as this migrates would write the watermark back.
-- An operator may ask the same (README, Rollback).
CREATE TABLE sync_reread_requests (
    source   text NOT NULL,
    stream   text NOT NULL,
    reason   text NOT NULL,
    asked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream)
);
-- Stored rows have no account_id yet: the opportunity table is read once more, and each
-- stored row rewritten with its account id.
INSERT INTO sync_reread_requests (source, stream, reason)
VALUES ('opportunities', 'opportunity', 'migration 0018 added opportunities.account_id');
