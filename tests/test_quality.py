"""The data-quality rule: a run whose input is mostly garbage commits what is valid, ends
degraded, and says why on one ERROR line."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from gong_sync.quality import rule_of, verdict
from gong_sync.runs import RunStats
from gong_sync.settings import ConfigError, QualitySettings, Settings
from tests.conftest import Env
from tests.factories import at, call, insert


def test_a_rule_leaves_out_the_values_a_reason_quotes() -> None:
    """Rows that broke the same rule with different values count together."""
    a = rule_of("started_at: timestamp 0001-10-01T12:00:00+00:00 is outside 1970..2099")
    b = rule_of("started_at: timestamp 2200-01-01T00:00:00+00:00 is outside 1970..2099")
    assert a == b
    assert rule_of("title: expected a date, got 'x'") == rule_of("title: expected a date, got 'y'")
    assert rule_of("title: NUL byte in text") == "title: NUL byte in text"


@pytest.mark.parametrize(
    ("read", "failed", "degraded"),
    [(99, 50, False), (100, 5, False), (100, 6, True), (1000, 51, True), (0, 0, False)],
    ids=["under-min-rows", "at-the-share", "over-the-share", "big-run", "empty"],
)
def test_the_share_and_the_minimum(read: int, failed: int, degraded: bool) -> None:
    stats = RunStats("calls", rows_read=read, rows_failed=failed, rejected_rules={"r": failed})
    assert (verdict(stats, QualitySettings()) is not None) == degraded


def test_the_verdict_names_the_top_rules_most_frequent_first() -> None:
    rules = {"title: NUL byte in text": 30, "gong_call_id: key is null": 50, "other": 1,
             "started_at: timestamp … is outside …": 10}  # fmt: skip
    stats = RunStats("calls", rows_read=200, rows_failed=91, rejected_rules=rules)
    why = verdict(stats, QualitySettings())
    assert why is not None
    assert why.startswith("91 of 200 rows dead-lettered (46%, over the 5% allowed)")
    assert why.index("key is null (50)") < why.index("NUL byte in text (30)") < why.index("(10)")
    assert "other" not in why  # the top three only


def test_a_source_may_allow_more() -> None:
    rule = QualitySettings(max_rejected_share_by_source={"emails": 0.5})
    stats = RunStats("emails", rows_read=200, rows_failed=90, rejected_rules={"r": 90})
    assert verdict(stats, rule) is None
    assert verdict(dataclasses.replace(stats, source="calls"), rule) is not None


def test_the_settings_say_what_to_fix() -> None:
    got = Settings.from_env({"GONG_SYNC_MAX_REJECTED_SHARE": "0.1",
                             "GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE": "emails=0.5",
                             "GONG_SYNC_QUALITY_MIN_ROWS": "10"}).quality  # fmt: skip
    assert (got.max_share_for("calls"), got.max_share_for("emails"), got.min_rows) == (
        0.1, 0.5, 10)  # fmt: skip
    for env in ({"GONG_SYNC_MAX_REJECTED_SHARE": "5%"},
                {"GONG_SYNC_MAX_REJECTED_SHARE": "nan"},
                {"GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE": "emails"},
                {"GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE": "emails=2"}):  # fmt: skip
        with pytest.raises(ConfigError, match="GONG_SYNC_MAX_REJECTED_SHARE"):
            Settings.from_env(env)


def test_a_mostly_bad_run_commits_the_valid_rows_and_ends_degraded_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """8 of 20 calls bad: the 12 good ones land, the run is degraded, one ERROR line says why."""
    good = [call(f"g{i:02d}", at(i)) for i in range(12)]
    bad = [call(f"b{i}", at(i), title=f"t{i}\x00") for i in range(6)] + [
        call(None, at(1)), call(None, at(2))]  # fmt: skip
    insert(env.bq, env.datasets, "call", good + bad)
    quality = QualitySettings(min_rows=10)
    env = Env(dataclasses.replace(env.settings, quality=quality), env.bq)
    with caplog.at_level(logging.INFO, logger="gong_sync"):
        stats = env.sync()
    assert stats.status == "degraded"
    assert env.query("SELECT gong_call_id FROM calls ORDER BY 1") == [(c["id"],) for c in good]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "8 of 20 rows dead-lettered (40%" in message
    assert message.index("title: NUL byte in text") < message.index("key is null (2)")
    assert "cannot store it) (6)" in message
    ((last_status, details),) = env.query("SELECT last_status, error_details FROM sync_status")
    assert last_status == "degraded"
    assert details["type"] == "DataQualityDegraded"


def test_a_few_bad_rows_leave_the_run_successful(env: Env) -> None:
    """1 in 20 is within the 5% allowed."""
    rows = [call(f"g{i:02d}", at(i)) for i in range(19)] + [call(None, at(0))]
    insert(env.bq, env.datasets, "call", rows)
    env = Env(dataclasses.replace(env.settings, quality=QualitySettings(min_rows=10)), env.bq)
    assert env.sync().status == "success"
