"""The opportunities source: dimension changes, deletes, and the Gong fallback."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from google.api_core.exceptions import NotFound

from gong_sync import migrate, state
from gong_sync.bigquery_reader import FallbackRefused
from tests.conftest import Env
from tests.factories import at, dml, insert, insert_account_and_owner, opportunity


def _seed(env: Env) -> None:
    insert_account_and_owner(env.bq, env.datasets)
    insert(
        env.bq,
        env.datasets,
        "opportunity",
        [opportunity("006A", at(0)), opportunity("006B", at(0), amount=None)],
    )


ROWS = "SELECT gong_opportunity_id, account_name, owner_email, amount FROM opportunities ORDER BY 1"


def test_an_account_rename_and_delete_reach_their_opportunities(env: Env) -> None:
    _seed(env)
    env.sync("opportunities")
    assert env.query(ROWS) == [
        ("006A", "Acme", "ann@seller.example", Decimal("1200.500000000")),
        ("006B", "Acme", "ann@seller.example", None),
    ]
    p, sf = env.bq.project, env.datasets["salesforce"]
    dml(
        env.bq,
        f"UPDATE `{p}.{sf}.account` SET name = 'Acme Corp', _fivetran_synced = @t"
        " WHERE id = '001A'",
        t=at(7200),
    )
    env.sync("opportunities")
    assert {r[1] for r in env.query(ROWS)} == {"Acme Corp"}
    dml(
        env.bq,
        f"UPDATE `{p}.{sf}.account` SET is_deleted = TRUE, _fivetran_synced = @t WHERE id = '001A'",
        t=at(9000),
    )
    dml(
        env.bq,
        f"UPDATE `{p}.{sf}.opportunity` SET is_deleted = TRUE, system_modstamp = @t"
        " WHERE id = '006B'",
        t=at(9000),
    )
    stats = env.sync("opportunities")
    assert env.query(ROWS) == [("006A", None, "ann@seller.example", Decimal("1200.500000000"))]
    assert stats.rows_deleted == 1


def test_a_deployment_older_than_account_ids_gets_them_on_its_next_run(env: Env) -> None:
    """Migration 0018 adds account_id; rows stored before it, long unchanged, get theirs."""
    _seed(env)
    # A later opportunity moves the watermark past the lookback of the first two.
    insert(env.bq, env.datasets, "opportunity", [opportunity("006C", at(3 * 86400))])
    env.sync("opportunities")
    conn = env.connect()
    try:  # the database as a version before 0018 left it
        cur = conn.cursor()
        cur.execute("ALTER TABLE opportunities DROP COLUMN account_id")
        cur.execute("DROP TABLE sync_reread_requests")
        cur.execute("DELETE FROM schema_migrations WHERE version = '0018_opportunities_account_id'")
        conn.commit()
        assert migrate.apply(conn) == ["0018_opportunities_account_id"]
        # A run of the previous version, still going as the new one migrates, moves the
        # watermark on: the request to read the table again outlives it.
        state.advance_watermark(conn, "opportunities", "opportunity", at(3 * 86400))
        conn.commit()
        (shown,) = [s for s in state.status(conn) if s["source"] == "opportunities"]
        assert shown["rereads_requested"] == ["opportunity"]  # `gong-sync status` shows it
    finally:
        conn.close()
    assert {r[0] for r in env.query("SELECT account_id FROM opportunities")} == {None}
    stats = env.sync("opportunities")
    assert env.query("SELECT gong_opportunity_id, account_id FROM opportunities ORDER BY 1") == [
        ("006A", "001A"),
        ("006B", "001A"),
        ("006C", "001A"),
    ]
    assert stats.rows_upserted == 3  # each stored row rewritten once, for its account_id
    assert env.sync("opportunities").rows_upserted == 0
    assert env.query("SELECT count(*) FROM sync_reread_requests") == [(0,)]  # asked once


def _gong_names_006a(env: Env) -> None:
    insert(env.bq, env.datasets, "call_context_integration", [
        {"call_id": "c1", "object_type": "Opportunity", "object_id": "006A", "name": "Gong's",
         "value": "Gong stage", "_fivetran_synced": at(0), "_fivetran_deleted": False},
    ])  # fmt: skip


def test_a_source_that_synced_from_salesforce_never_falls_back(env: Env) -> None:
    """A Salesforce table gone after it synced (a connector rebuilt, a dataset renamed) is an
    error: Gong's record would overwrite names and stages, and its verify delete the rest."""
    _seed(env)
    env.sync("opportunities")
    before = env.query(ROWS)
    _gong_names_006a(env)
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.opportunity")
    with pytest.raises(
        FallbackRefused, match="it has synced from account, opportunity, user before"
    ):
        env.sync("opportunities")
    with pytest.raises(FallbackRefused, match="DELETE FROM sync_watermarks"):
        env.verify("opportunities")
    assert env.query(ROWS) == before
    assert env.query(
        "SELECT name, stage FROM opportunities WHERE gong_opportunity_id = '006A'"
    ) == [("Deal 006A", "Discovery")]


def test_a_missing_account_table_is_an_error_not_the_fallback(env: Env) -> None:
    """Only a missing opportunity table means there is no Salesforce to read."""
    _seed(env)
    _gong_names_006a(env)
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.account")
    with pytest.raises(NotFound, match="account"):
        env.sync("opportunities")
    assert env.query(ROWS) == []


def test_without_salesforce_it_falls_back_to_gongs_context(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.opportunity")
    insert(env.bq, env.datasets, "call_context_integration", [
        {"call_id": "c1", "object_type": "Opportunity", "object_id": "006A", "name": "Big deal",
         "value": "Negotiation", "_fivetran_synced": at(0), "_fivetran_deleted": False},
        {"call_id": "c2", "object_type": "Opportunity", "object_id": "006A", "name": "Big deal",
         "value": "Negotiation", "_fivetran_synced": at(1), "_fivetran_deleted": False},
        {"call_id": "c1", "object_type": "Account", "object_id": "001A", "name": "Acme",
         "value": "Customer", "_fivetran_synced": at(0), "_fivetran_deleted": False},
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        stats = env.sync("opportunities")
    assert stats.status == "success"
    assert any(
        "fallback" in r.getMessage() and "call_context_integration" in r.getMessage()
        for r in caplog.records
    )
    assert env.query("SELECT gong_opportunity_id, name, stage, amount FROM opportunities") == [
        ("006A", "Big deal", "Negotiation", None)
    ]
