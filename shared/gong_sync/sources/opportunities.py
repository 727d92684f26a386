"""The `opportunities` source: Salesforce opportunities with their account and owner email."""

from __future__ import annotations

from gong_sync.declarations import Column, Source, Stream, Target, Touch, deleted, live
from gong_sync.sources.salesforce import account_and_owner_streams

OPPORTUNITIES = Target(
    table="opportunities",
    key=("gong_opportunity_id",),
    parent="gong_opportunity_id",
    columns=(
        Column("gong_opportunity_id", "text", "o.id"),
        Column("name", "text", "o.name"),
        Column("account_id", "text", "o.account_id"),
        Column("account_name", "text", "a.name"),
        Column("owner_email", "text", "LOWER(u.email)"),
        Column("stage", "text", "o.stage_name"),
        Column("close_date", "date", "o.close_date"),
        Column("amount", "numeric", "o.amount"),
        # Present only where the customer lands Gong's deal health next to the opportunity.
        Column("health_score", "numeric", "o.health_score", optional=True),
        Column("source_modified_at", "timestamptz", "o.system_modstamp", compare=False),
    ),
    from_sql=(
        "{opportunity} AS o"
        " LEFT JOIN {account} AS a"
        f"   ON a.id = o.account_id AND {live('a.is_deleted', 'a._fivetran_deleted')}"
        f" LEFT JOIN {{user}} AS u ON u.id = o.owner_id AND {live('u._fivetran_deleted')}"
    ),
    deleted_sql=deleted("o.is_deleted", "o._fivetran_deleted"),
)

# Without a Salesforce dataset, Gong's own CRM context is the only record of opportunities:
# the Opportunity objects that calls are linked to, with their name and stage.
_GONG_OPPORTUNITIES = (
    "SELECT object_id AS id, MAX(name) AS name, MAX(value) AS stage"
    " FROM {call_context_integration}"
    f" WHERE {live('_fivetran_deleted')} AND object_type = 'Opportunity'"
    " AND object_id IS NOT NULL"
    " GROUP BY object_id"
)

FROM_GONG = Source(
    name="opportunities",
    streams=(
        Stream(
            table="call_context_integration",
            alias="x",
            key=("call_id", "object_type", "object_id"),
            touches=(Touch("opportunities", column="object_id"),),
        ),
    ),
    targets=(
        Target(
            table="opportunities",
            key=("gong_opportunity_id",),
            parent="gong_opportunity_id",
            columns=(
                Column("gong_opportunity_id", "text", "g.id"),
                Column("name", "text", "g.name"),
                Column("stage", "text", "g.stage"),
            ),
            from_sql=f"({_GONG_OPPORTUNITIES}) AS g",
            deleted_sql="FALSE",
        ),
    ),
    datasets={"call_context_integration": "gong"},
)

SOURCE = Source(
    name="opportunities",
    streams=(
        Stream(
            table="opportunity",
            alias="o",
            key=("id",),
            cursor="system_modstamp",
            drives="opportunities",
        ),
        # A renamed account, or an owner with a new email, changes these rows.
        *account_and_owner_streams("opportunities", "opportunity"),
    ),
    targets=(OPPORTUNITIES,),
    datasets={"opportunity": "salesforce", "account": "salesforce", "user": "salesforce"},
    fallback=FROM_GONG,
    fallback_for=("opportunity",),  # no Salesforce opportunities: Gong's record
)
