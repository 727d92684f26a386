"""The README's cost table is the model's output, and the model prices what the engine builds."""

from __future__ import annotations

from pathlib import Path

from bench import cost_model
from gong_sync import sources

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_cost_table_is_the_models() -> None:
    """Regenerate with `python -m bench.cost_model` when the engine's queries change."""
    assert cost_model.table() in README.read_text()


def test_the_readme_backfill_table_is_the_models() -> None:
    """Regenerate with `python -m bench.cost_model` when the derivation queries change."""
    assert cost_model.backfill_table() in README.read_text()


def test_a_backfill_sweep_bills_less_than_keyed_derivations() -> None:
    """Each swept target: fewer jobs and fewer bytes than a query per 10,000 parents."""
    found = cost_model.backfill_derivations("calls")
    assert {t for t, *_ in found} == {"call_speakers", "call_opportunities"}
    for table, keyed, keyed_bytes, swept, swept_bytes in found:
        assert swept * 10 < keyed, table
        assert swept_bytes * 10 < keyed_bytes, table


def test_narrow_derivations_leave_the_email_bodies_unread() -> None:
    """Before, a recipient's change derived whole emails; now no derivation names the body."""
    before = [
        q for q in cost_model.hourly(sources.get("emails"), before=True) if "derived" in q.label
    ]
    now = [
        q for q in cost_model.hourly(sources.get("emails"), before=False) if "derived" in q.label
    ]
    assert all("body" in q.text for q in before)
    assert now
    assert not [q for q in now if "body" in q.text]


def test_no_source_bills_more_than_before() -> None:
    """Batching, narrowing and floors only ever remove bytes clustered; unclustered, a floor
    adds the cursor column of the tables it reads (less than a tenth of a percent)."""
    for name in sources.SOURCES:
        line = cost_model.line(name)
        assert line.unclustered_now <= line.unclustered_before * 1.001, name
        assert line.clustered_now <= line.clustered_before, name


def test_clustering_prunes_a_page_query_and_a_derivation_from_its_floor_only() -> None:
    """A lookup or a join reads by key, which clustering on the cursor cannot prune; a
    derivation reads its floored tables from the floor on, the rest of it by key."""
    tables = cost_model._tables()
    pruned = set()
    for query in cost_model.hourly(sources.get("calls"), before=False):
        clustered = cost_model.billed(query, tables, clustered=True)
        unclustered = cost_model.billed(query, tables, clustered=False)
        if query.stream is None and not query.floored:
            assert clustered == unclustered, query.label
        else:  # a small table bills its 10 MiB either way
            assert clustered <= unclustered, query.label
        if clustered < unclustered:
            pruned.add(query.label)
        if query.stream == "transcript":  # 50M rows: pruned to two hours of them
            assert clustered * 100 < unclustered
    # Users touch the speakers once a day, not every hour: the hourly batch is new calls'.
    assert "call_speakers (derived)" in pruned
    assert "call_speakers (derived), deferred" not in pruned
    # An opportunity's calls are old ones: their links' derivation reads all of time.
    assert "call_opportunities (derived)" not in pruned
