-- Salesforce contacts (the `contacts` source). The coaching app matches an email's recipients
-- and a call's participants to contacts by email, and lists the contacts of an account.

CREATE TABLE contacts (
    contact_id          text PRIMARY KEY,
    account_id          text,
    account_name        text,
    owner_email         text,
    name                text,
    first_name          text,
    last_name           text,
    email               text,
    title               text,
    phone               text,
    source_modified_at  timestamptz
);
-- The sync stores the email trimmed and lower-cased, like call_speakers.email and
-- emails.recipients, so a plain index serves both `email = lower($1)` and a join on them.
-- Not unique: two contacts (a duplicate in Salesforce) may share an address.
CREATE INDEX contacts_email ON contacts (email);
CREATE INDEX contacts_account ON contacts (account_id);
