-- Parents (calls) deleted together with their children. When such a parent comes back (a row
-- restored in Fivetran, or a call removed by `verify --fix` that lands again), its children
-- are derived again: their own rows did not move, so no cursor would read them.
CREATE TABLE deleted_parents (
    source      text NOT NULL,
    target      text NOT NULL,
    parent      text NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, target, parent)
);
