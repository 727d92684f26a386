"""A touch that feeds some columns derives only those, from only the joins they need."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gong_sync import sources
from gong_sync.declarations import Column, RowError, Target, Touch
from gong_sync.narrowing import narrowed, prune
from gong_sync.row_mapping import RowMapper

FROM = (
    "{a} AS a LEFT JOIN (SELECT k, MAX(v) AS v FROM {b} GROUP BY k) AS b ON b.k = a.id"
    " LEFT JOIN {c} AS c ON c.id = b.k LEFT JOIN {d} AS d ON d.id = a.id"
)


def test_prune_keeps_what_is_used_and_what_a_kept_join_needs() -> None:
    """c is used; its ON names b, so b stays; d goes. The subquery's own FROM is not split."""
    kept = prune(FROM, ["c.name", "a.id"])
    assert "AS b ON" in kept
    assert "AS c ON" in kept
    assert "{d}" not in kept
    assert prune(FROM, ["a.id"]) == "{a} AS a"


def test_prune_leaves_a_clause_with_an_inner_join_whole() -> None:
    """An inner join filters rows: leaving it out would change which rows there are."""
    text = "{a} AS a JOIN {b} AS b ON b.id = a.id LEFT JOIN {c} AS c ON c.id = a.id"
    assert prune(text, ["a.id"]) == text


def _target(**over: Any) -> Target:
    base = Target(
        table="things",
        key=("id",),
        parent="id",
        columns=(Column("id", "text", "a.id"), Column("name", "text", "c.name")),
        from_sql=FROM,
        deleted_sql="a.gone",
    )
    return Target(**{**base.__dict__, **over})


@pytest.mark.parametrize(
    ("feeds", "over"),
    [
        (("id",), {}),  # the key is never fed
        (("colour",), {}),  # no such column
        (("name",), {"children": ("parts",)}),  # a parent with children derives whole
        (("name",), {"key": ("id", "name")}),  # a set of rows per parent derives whole
    ],
)
def test_a_touch_that_cannot_be_narrowed_is_refused(
    feeds: tuple[str, ...], over: dict[str, Any]
) -> None:
    """The error names the target and what a narrow touch needs."""
    with pytest.raises(ValueError, match="cannot be derived narrowly"):
        narrowed(_target(**over), feeds)


def _narrow_touches() -> list[tuple[Target, Touch]]:
    found = []
    for source in sources.SOURCES.values():
        for declaration in (source, source.fallback):
            if declaration is None:
                continue
            for stream in declaration.streams:
                found += [(declaration.target(t.target), t) for t in stream.touches if t.feeds]
    return found


TOUCHES = _narrow_touches()


def test_the_declared_narrow_touches_are_the_costly_ones() -> None:
    """Emails' sender and recipients, and the Salesforce account and owner, feed one column."""
    named = sorted({(target.table, touch.feeds) for target, touch in TOUCHES})
    assert named == [
        ("contacts", ("account_name",)),
        ("contacts", ("owner_email",)),
        ("emails", ("recipients",)),
        ("emails", ("sender_email",)),
        ("opportunities", ("account_name",)),
        ("opportunities", ("owner_email",)),
    ]
    for target, touch in TOUCHES:  # and each leaves out a join
        assert len(narrowed(target, touch.feeds).from_sql) < len(target.from_sql)


_VALUES = {
    "text": st.one_of(st.none(), st.text(max_size=8)),
    "text[]": st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=5)))),
    "timestamptz": st.none(),
    "jsonb": st.none(),
}


def _fields(mapper: RowMapper, row: dict[str, Any]) -> dict[str, str]:
    _, line = mapper.map(row)
    return dict(zip(mapper.target.column_names, line.rstrip("\n").split("\t"), strict=True))


@pytest.mark.parametrize(("target", "touch"), TOUCHES, ids=lambda v: getattr(v, "table", ""))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_narrow_row_maps_its_fed_columns_as_the_whole_row_does(
    target: Target, touch: Touch, data: st.DataObject
) -> None:
    """The transform and encoders give a fed column the same value from the narrow inputs."""
    row = {c.name: data.draw(_VALUES.get(c.type, st.none())) for c in target.columns}
    row |= {c.name: data.draw(_VALUES.get(c.type, st.none())) for c in target.inputs}
    row[target.parent] = "k1"
    narrow = narrowed(target, touch.feeds)
    names = {c.name for c in (*narrow.columns, *narrow.inputs)}
    try:
        whole = _fields(RowMapper(target), row)
    except RowError:  # its own stream dead-letters it; the narrow update keeps the stored row
        assume(False)
    part = _fields(RowMapper(narrow), {k: v for k, v in row.items() if k in names})
    for column in touch.feeds:
        assert part[column] == whole[column]
