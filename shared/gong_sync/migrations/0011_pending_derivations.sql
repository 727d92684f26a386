-- Parents a touching stream named, waiting to have their target rows derived again. They are
-- written in the transaction that moves the stream's position, and deleted in the one that
-- writes their new rows, so a run derives each target once at its end (one BigQuery scan per
-- target, not one per page) and a run stopped in between loses none of them.
CREATE TABLE pending_derivations (
    source  text NOT NULL,
    target  text NOT NULL,
    parent  text,                   -- NULL: the rows whose parent is NULL (dead letters)
    feeds   text NOT NULL,          -- '' the whole row; else the columns the touch feeds
    stream  text NOT NULL,          -- the first stream that named it (for dead letters)
    CONSTRAINT pending_derivations_unique UNIQUE NULLS NOT DISTINCT (source, target, parent, feeds)
);
