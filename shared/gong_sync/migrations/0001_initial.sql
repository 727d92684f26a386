-- The target model (DESIGN §3). Natural keys only, so every write is an idempotent upsert.
-- No foreign keys between synced tables: Fivetran lands each table on its own schedule, so a
-- child (a transcript) may arrive before its parent (the call). The engine cascades a parent's
-- delete to the children its source declares instead.

CREATE TABLE calls (
    gong_call_id      text PRIMARY KEY,
    title             text,
    scheduled_at      timestamptz,
    started_at        timestamptz,
    duration_seconds  bigint,
    direction         text,
    scope             text,
    media             text,
    purpose           text,
    system            text,
    language          text,
    url               text,
    primary_user_id   text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_synced_at  timestamptz
);

CREATE TABLE call_speakers (
    gong_call_id          text NOT NULL,
    speaker_id            text NOT NULL,
    user_id               text,
    name                  text,
    email                 text,
    title                 text,
    company_side          text,
    talk_time_seconds     double precision,
    talk_time_percentage  numeric(5, 2),
    PRIMARY KEY (gong_call_id, speaker_id)
);

-- One row per monologue (Gong's transcript row); its sentences stay in `sentences`.
CREATE TABLE transcripts (
    gong_call_id       text NOT NULL,
    sequence_number    integer NOT NULL,
    speaker_id         text,
    timestamp_seconds  numeric(12, 3),
    end_seconds        numeric(12, 3),
    text               text,
    topic              text,
    sentiment          text,
    topics             varchar[],
    sentences          jsonb,
    source_synced_at   timestamptz,
    PRIMARY KEY (gong_call_id, sequence_number)
);

CREATE TABLE emails (
    gong_email_id     text PRIMARY KEY,
    subject           text,
    sent_at           timestamptz,
    sender_email      text,
    recipients        text[],
    body_snippet      varchar(500),
    opportunity_id    text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_synced_at  timestamptz
);

CREATE TABLE opportunities (
    gong_opportunity_id  text PRIMARY KEY,
    name                 text,
    account_name         text,
    owner_email          text,
    stage                text,
    close_date           date,
    amount               numeric(38, 9),
    health_score         numeric,
    source_modified_at   timestamptz
);

CREATE TABLE call_opportunities (
    gong_call_id         text NOT NULL,
    gong_opportunity_id  text NOT NULL,
    PRIMARY KEY (gong_call_id, gong_opportunity_id)
);
CREATE INDEX call_opportunities_opportunity ON call_opportunities (gong_opportunity_id);

-- One row per source: the outcome of its last run.
CREATE TABLE sync_status (
    source            text PRIMARY KEY,
    watermark         timestamptz,
    last_run_at       timestamptz,
    last_status       text,
    rows_read         bigint NOT NULL DEFAULT 0,
    rows_upserted     bigint NOT NULL DEFAULT 0,
    rows_unchanged    bigint NOT NULL DEFAULT 0,
    rows_deleted      bigint NOT NULL DEFAULT 0,
    rows_failed       bigint NOT NULL DEFAULT 0,
    bytes_processed   bigint NOT NULL DEFAULT 0,
    duration_seconds  double precision,
    error_details     jsonb
);

-- One watermark per BigQuery table a source reads, because each table moves on its own.
CREATE TABLE sync_watermarks (
    source      text NOT NULL,
    stream      text NOT NULL,
    watermark   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, stream)
);

-- The local dead-letter sink: rejected records with their key and reason. The unique key makes
-- a record that is re-read inside the lookback window land here once, not once per run.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    stream       text NOT NULL,
    target       text NOT NULL,
    record_key   text NOT NULL,
    reason       text NOT NULL,
    record       jsonb NOT NULL,
    record_sha   text NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    times_seen   integer NOT NULL DEFAULT 1,
    UNIQUE (source, target, record_key, reason, record_sha)
);
