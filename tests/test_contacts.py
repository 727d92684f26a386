"""The contacts source: account and owner changes reach their contacts; deletes; NULL flags."""

from __future__ import annotations

from tests.conftest import Env
from tests.factories import at, contact, dml, insert, insert_account_and_owner

ROWS = "SELECT contact_id, account_name, owner_email, email FROM contacts ORDER BY 1"


def _seed(env: Env) -> None:
    insert_account_and_owner(env.bq, env.datasets)
    insert(env.bq, env.datasets, "contact", [
        contact("003A", at(0), email=" Pat@Buyer.Example "),
        contact("003B", at(0), is_deleted=None, _fivetran_deleted=None),
        contact("003C", at(0), is_deleted=True),
    ])  # fmt: skip


def test_account_and_owner_changes_reach_their_contacts_and_deletes_go(env: Env) -> None:
    _seed(env)
    assert env.sync("contacts").status == "success"
    assert env.query(ROWS) == [
        ("003A", "Acme", "ann@seller.example", "pat@buyer.example"),
        ("003B", "Acme", "ann@seller.example", "pat.003b@buyer.example"),
    ]
    p, sf = env.bq.project, env.datasets["salesforce"]
    # Neither contact row moves: only the account and user streams name them.
    dml(env.bq, f"UPDATE `{p}.{sf}.account` SET name = 'Acme Corp', _fivetran_synced = @t"
        " WHERE id = '001A'", t=at(7200))  # fmt: skip
    dml(env.bq, f"UPDATE `{p}.{sf}.user` SET email = 'Ann.Lee@Seller.example',"
        " _fivetran_synced = @t WHERE id = '005A'", t=at(7200))  # fmt: skip
    stats = env.sync("contacts")
    assert env.query(ROWS) == [
        ("003A", "Acme Corp", "ann.lee@seller.example", "pat@buyer.example"),
        ("003B", "Acme Corp", "ann.lee@seller.example", "pat.003b@buyer.example"),
    ]
    assert stats.rows_upserted == 2
    # A deleted account leaves its contacts without a name; a contact's own delete removes it.
    dml(env.bq, f"UPDATE `{p}.{sf}.account` SET is_deleted = TRUE, _fivetran_synced = @t"
        " WHERE id = '001A'", t=at(9000))  # fmt: skip
    dml(env.bq, f"UPDATE `{p}.{sf}.contact` SET is_deleted = TRUE, system_modstamp = @t"
        " WHERE id = '003A'", t=at(9000))  # fmt: skip
    stats = env.sync("contacts")
    assert env.query(ROWS) == [("003B", None, "ann.lee@seller.example", "pat.003b@buyer.example")]
    assert stats.rows_deleted == 1
