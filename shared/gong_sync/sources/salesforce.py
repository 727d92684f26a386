"""What Salesforce-backed sources share: the account and owner joined into their rows."""

from __future__ import annotations

from gong_sync.declarations import Stream, Touch


def account_and_owner_streams(target: str, table: str) -> tuple[Stream, Stream]:
    """Streams re-deriving `target` rows of `table` whose account or owner (user) changed.

    A renamed or deleted account changes account_name; an owner's changed email changes
    owner_email. Both look up the affected rows by their account_id and owner_id, and derive
    only the column they feed.
    """
    return (
        Stream(
            table="account",
            alias="a",
            key=("id",),
            touches=(
                Touch(
                    target,
                    lookup_sql=f"SELECT id AS k FROM {{{table}}} WHERE account_id IN UNNEST(@ids)",
                    feeds=("account_name",),
                ),
            ),
        ),
        Stream(
            table="user",
            alias="u",
            key=("id",),
            touches=(
                Touch(
                    target,
                    lookup_sql=f"SELECT id AS k FROM {{{table}}} WHERE owner_id IN UNNEST(@ids)",
                    feeds=("owner_email",),
                ),
            ),
        ),
    )
