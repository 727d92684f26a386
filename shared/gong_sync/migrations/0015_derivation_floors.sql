-- Per parent of a derived target, the earliest cursor any row naming it has carried (see
-- floors.py): a derivation reads each such table from the oldest floor of its batch on, which
-- a table clustered on _fivetran_synced prunes. Only ever lowered: in a page's transaction, by
-- a seed, by a stream a backfill skips, or by a run by ids (floors.py).
CREATE TABLE derivation_floors (
    source  text NOT NULL,
    target  text NOT NULL,
    parent  text NOT NULL,
    floor   timestamptz NOT NULL,
    PRIMARY KEY (source, target, parent)
);

-- Targets whose floors cover every row read before them: seeded by one query, or recorded
-- from the first read on. Until then a derivation reads its tables in full, as before.
CREATE TABLE derivation_floor_seeds (
    source     text NOT NULL,
    target     text NOT NULL,
    seeded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, target)
);
