"""Resume positions: the stored JSON and the typed position agree, without any service."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gong_sync import positions
from gong_sync.positions import Position

_times = st.datetimes(timezones=st.just(UTC))
# Keys are what Fivetran lands: text (NUL and lone surrogates included), numbers, nulls.
_keys = st.tuples(st.one_of(st.text(), st.integers(), st.none()),
                  st.one_of(st.text(), st.integers(), st.none()))  # fmt: skip


@given(cursor=_times, key=_keys, window=st.none() | _times)
def test_a_position_survives_its_stored_form(
    cursor: datetime, key: tuple[object, ...], window: datetime | None
) -> None:
    position = positions.after(cursor, key, window)
    # Through the text jsonb stores and gives back.
    stored = json.loads(json.dumps(position.to_json()))
    assert positions.parse(stored) == position


@given(window=st.none() | _times)
def test_done_survives_its_stored_form(window: datetime | None) -> None:
    done = positions.finished(window)
    assert positions.parse(json.loads(json.dumps(done.to_json()))) == done


def test_older_runs_stored_the_key_as_a_list() -> None:
    stored = {"cursor": "2026-10-01T00:00:00+00:00", "key": ["c1", 3]}
    assert positions.parse(stored) == Position(datetime(2026, 10, 1, tzinfo=UTC), ("c1", 3))


@pytest.mark.parametrize(
    "stored",
    ["garbage", 5, None, {"cursor": "yesterday", "key": 5}, {"cursor": "2026-10-01"},
     {"cursor": "2026-10-01T00:00:00+00:00", "key_json": "{}"},
     {"done": True, "window": "not a time"}],
)  # fmt: skip
def test_anything_else_is_garbage(stored: object) -> None:
    with pytest.raises(ValueError, match=r"not an object|unreadable|not a list"):
        positions.parse(stored)


def test_only_its_own_window_resumes_a_window_position() -> None:
    since = datetime(2026, 10, 1, tzinfo=UTC)
    mine = positions.after(since, ("k",), window=since)
    assert mine.belongs_to(since)
    assert not mine.belongs_to(None)  # an hourly run would skip the rows before it
    assert not mine.belongs_to(datetime(2026, 9, 1, tzinfo=UTC))
    assert positions.after(since, ("k",), window=None).belongs_to(since)


@given(
    job_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    location=st.none() | st.sampled_from(["US", "EU", "europe-west1"]),
    offset=st.integers(min_value=1, max_value=10**9),
    extra=st.integers(min_value=0, max_value=10**9),
)
def test_the_result_a_position_was_read_from_survives_its_stored_form(
    job_id: str, location: str | None, offset: int, extra: int
) -> None:
    """A continuation finds the job and the row to page on from."""
    result = positions.Result(job_id, location, offset, offset + extra)
    position = positions.after(datetime(2026, 1, 1, tzinfo=UTC), ("c1",), None, result)
    stored = json.loads(json.dumps(position.to_json()))
    assert positions.parse(stored) == position


@pytest.mark.parametrize(
    "result",
    [{"job_id": 1, "offset": 3, "limit": 5}, {"job_id": "j", "offset": 0, "limit": 5},
     {"job_id": "j", "offset": 6, "limit": 5}, {"job_id": "j", "offset": 3}, "j"],
)  # fmt: skip
def test_an_unreadable_result_is_dropped_and_the_keyset_still_resumes(result: object) -> None:
    """A garbled reference costs a query again, never the position."""
    stored = {"cursor": "2026-01-01T00:00:00+00:00", "key_json": '["c1"]', "result": result}
    position = positions.parse(stored)
    assert position.result is None
    assert position.key == ("c1",)


def test_a_finished_stream_keeps_no_result() -> None:
    """Done means done: no continuation pages through anything."""
    done = positions.Position(done=True, result=positions.Result("j", None, 1, 5))
    assert "result" not in done.to_json()
