-- A verify compares every key of a target in BigQuery with Postgres. At 50M transcript rows
-- those keys do not fit in a function's memory, nor are they read within one invocation, so
-- they are staged here and compared in SQL, and a verify continues across invocations from
-- its progress. Postgres keys (side 'p') are snapshot before any BigQuery key query runs,
-- so a row synced in between can only look missing, never extra or orphaned.
CREATE TABLE verify_keys (
    source      text NOT NULL,
    target      text NOT NULL,
    side        "char" NOT NULL,        -- 'p': Postgres snapshot, 'b': BigQuery
    k1          text NOT NULL,
    k2          text,
    k3          text,
    k4          text,
    record_key  text                    -- BigQuery side: the key as a dead letter records it
);
CREATE INDEX verify_keys_lookup ON verify_keys (source, target, side, k1);

CREATE TABLE verify_progress (
    source      text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    jobs        jsonb NOT NULL          -- target -> {job_id, location, offset, unstorable, done}
);
