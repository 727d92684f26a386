"""The `contacts` source: Salesforce contacts with account name, owner email, and email.

The coaching app matches email recipients and call participants to a contact by email, so
the email is stored trimmed and lower-cased, as `emails` stores its addresses.
"""

from __future__ import annotations

from gong_sync.declarations import Column, Source, Stream, Target, deleted, live
from gong_sync.sources.salesforce import account_and_owner_streams

CONTACTS = Target(
    table="contacts",
    key=("contact_id",),
    parent="contact_id",
    columns=(
        Column("contact_id", "text", "c.id"),
        Column("account_id", "text", "c.account_id"),
        Column("account_name", "text", "a.name"),
        Column("owner_email", "text", "LOWER(u.email)"),
        Column("name", "text", "c.name"),
        Column("first_name", "text", "c.first_name"),
        Column("last_name", "text", "c.last_name"),
        Column("email", "text", "LOWER(TRIM(c.email))"),
        Column("title", "text", "c.title"),
        Column("phone", "text", "c.phone"),
        Column("source_modified_at", "timestamptz", "c.system_modstamp", compare=False),
    ),
    from_sql=(
        "{contact} AS c"
        " LEFT JOIN {account} AS a"
        f"   ON a.id = c.account_id AND {live('a.is_deleted', 'a._fivetran_deleted')}"
        f" LEFT JOIN {{user}} AS u ON u.id = c.owner_id AND {live('u._fivetran_deleted')}"
    ),
    deleted_sql=deleted("c.is_deleted", "c._fivetran_deleted"),
)

SOURCE = Source(
    name="contacts",
    streams=(
        # Salesforce's own change stamp, as for opportunities: it moves with every edit of
        # the contact, its soft delete included.
        Stream(
            table="contact",
            alias="c",
            key=("id",),
            cursor="system_modstamp",
            drives="contacts",
        ),
        # A renamed account, or an owner with a new email, changes these rows.
        *account_and_owner_streams("contacts", "contact"),
    ),
    targets=(CONTACTS,),
    datasets={"contact": "salesforce", "account": "salesforce", "user": "salesforce"},
)
