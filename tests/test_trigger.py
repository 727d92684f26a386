"""The trigger message contract: every bad message is rejected with an error naming the field."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import pytest

from gong_sync import sources
from gong_sync.trigger import BadMessage, Trigger, decode, parse, reporter

KNOWN = list(sources.SOURCES)


def b64(body: object) -> str:
    return base64.b64encode(json.dumps(body).encode()).decode()


def test_the_hourly_message_means_every_source_incrementally() -> None:
    assert decode(b64({"mode": "incremental"}), KNOWN) == Trigger()
    assert decode(b64({}), KNOWN) == Trigger()


@pytest.mark.parametrize("data", [None, "", base64.b64encode(b"  ").decode()])
def test_an_empty_message_is_rejected_as_the_platform_rejects_it(data: str | None) -> None:
    with pytest.raises(BadMessage, match=r"^data: the message is empty \(attributes only\)"):
        decode(data, KNOWN)


@pytest.mark.parametrize(
    ("data", "attributes", "owner"),
    [
        (b64({"mode": "never"}), {}, "calls"),
        (b64({"sources": ["nope", "emails"], "mode": "never"}), {}, "emails"),
        (b64({"sources": "emails"}), {}, "calls"),
        ("%%% not base64", {}, "calls"),
        (None, {"source": "opportunities"}, "opportunities"),
    ],
)
def test_one_function_reports_a_malformed_message(
    data: str | None, attributes: dict[str, str], owner: str
) -> None:
    assert reporter(data, attributes, KNOWN) == owner


def test_a_full_message_round_trips() -> None:
    body = {
        "sources": ["calls"], "mode": "full_refresh", "since": "2026-11-01T00:00:00Z",
        "until": "2026-11-02T00:00:00.000001+00:00", "ids": ["c1", "c2"],
    }  # fmt: skip
    parsed = decode(b64(body), KNOWN)
    assert parsed.sources == ("calls",)
    assert parsed.mode == "full_refresh"
    assert parsed.since == datetime(2026, 11, 1, tzinfo=UTC)
    assert parsed.until == datetime(2026, 11, 2, 0, 0, 0, 1, tzinfo=UTC)
    assert parsed.ids == ("c1", "c2")
    assert parse(parsed.to_json(), KNOWN) == parsed
    assert parsed.names("calls")
    assert not parsed.names("emails")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"source": ["calls"]}, "source: unknown field"),
        ({"mode": "everything"}, "mode: 'everything' is not"),
        ({"sources": "calls"}, "sources: expected a list"),
        ({"sources": ["meetings"]}, "sources: unknown source 'meetings'"),
        ({"since": "yesterday"}, "since: 'yesterday' is not an RFC 3339 time"),
        ({"until": "2026-11-01T00:00:00"}, "until: '2026-11-01T00:00:00' has no UTC offset"),
        ({"since": 5}, "since: expected an RFC 3339 string"),
        (
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "since: must not be after until",
        ),
        ({"ids": ["c1"]}, "ids: name exactly one source"),
        ({"sources": ["calls"], "ids": [""]}, "ids: expected a list of non-empty strings"),
        (["calls"], "message: expected a JSON object"),
        ({"sources": ["calls'; DROP TABLE calls; --"]}, "sources: unknown source"),
        ({"sample": 5}, 'sample: only a verify samples values; add "mode": "verify"'),
        ({"mode": "verify", "sample": -1}, "sample: expected a whole number from 0 to 10000"),
        ({"mode": "verify", "sample": True}, "sample: expected a whole number from 0 to 10000"),
        ({"mode": "verify", "sample": "500"}, "sample: expected a whole number from 0 to 10000"),
    ],
)
def test_bad_messages_name_the_field(body: object, error: str) -> None:
    with pytest.raises(BadMessage, match="^" + re.escape(error)):
        decode(b64(body), KNOWN)


def test_a_verify_may_compare_keys_only() -> None:
    """The daily schedule's message: sample 0 survives the round trip; absent means default."""
    daily = parse({"mode": "verify", "fix": True, "sample": 0}, KNOWN)
    assert (daily.sample, daily.fix) == (0, True)
    assert parse(daily.to_json(), KNOWN) == daily
    assert parse({"mode": "verify"}, KNOWN).sample is None


def test_bad_base64_and_bad_json_are_rejected() -> None:
    with pytest.raises(BadMessage, match=r"^data: not valid base64"):
        decode("not base64!!", KNOWN)
    with pytest.raises(BadMessage, match=r"^data: not valid JSON"):
        decode(base64.b64encode(b"{mode: x").decode(), KNOWN)
    with pytest.raises(BadMessage, match=r"^data: not valid JSON"):
        decode(base64.b64encode(b"\xff\xfe").decode(), KNOWN)
