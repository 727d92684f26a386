"""The log-based metrics, taken from the Pulumi program, see the lines the functions write.

The functions run under functions-framework as gen2 runs them (LOG_EXECUTION_ID=true), their
stderr becomes Cloud Logging entries (log_entries.py), and each metric's filter and
extractors, read from the program's resource inputs, are evaluated against those entries.
Before the logging fix, the INFO run summary never reached stderr on gen2 and ERROR lines
carried no `source` label: every metric here counted nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_structured

from gong_sync_infra.cloud_local.log_entries import entry, extract, matches
from tests.conftest import Cloud
from tests.test_functions import client, platform_logging, pubsub_event, seed_calls  # noqa: F401
from tests.test_infra import deploy


def _leave_drift(cloud: Cloud, app: Any) -> None:
    """Drift a verify without --fix leaves: the reconciliation's ERROR line."""
    first = "SELECT min(gong_call_id) FROM calls"
    assert cloud.env.execute(f"DELETE FROM calls WHERE gong_call_id IN ({first})") == 1
    verify = {"sources": ["calls"], "mode": "verify", "sample": 0}
    headers, body = to_structured(pubsub_event(verify))
    assert app.post("/", headers=headers, data=body).status_code == 200


def test_every_metric_counts_the_lines_it_is_for(
    cloud: Cloud,
    platform_logging: None,  # noqa: F811 - the fixture, imported
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    metrics = {m.inputs["name"]: m.inputs for m in deploy(tmp_path).of(
        "gcp:logging/metric:Metric")}  # fmt: skip
    seed_calls(cloud)  # two good calls and one dead letter
    app = client("sync_calls")
    headers, body = to_structured(pubsub_event({"sources": ["calls"]}))
    assert app.post("/", headers=headers, data=body).status_code == 200
    _leave_drift(cloud, app)
    cloud.env.bq.delete_table(f"{cloud.env.bq.project}.{cloud.env.datasets['gong']}.call")
    assert app.post("/", headers=headers, data=body).status_code == 500
    captured = capfd.readouterr()
    entries = [entry(x) for x in (captured.out + captured.err).splitlines() if x[:1] == "{"]
    assert entries

    def seen(name: str) -> list[dict[str, Any]]:
        metric = metrics[name]
        return [e for e in entries if matches(metric["filter"], e)]

    rows = seen("gong_sync/rows_synced")
    assert [e["jsonPayload"]["run"]["status"] for e in rows] == ["success", "failed"]
    value = metrics["gong_sync/rows_synced"]["valueExtractor"]
    assert [extract(value, e) for e in rows] == [2, 0]
    billed = seen("gong_sync/bytes_billed")
    value = metrics["gong_sync/bytes_billed"]["valueExtractor"]
    assert [extract(value, e) for e in billed] == [e["jsonPayload"]["run"]["bytes_billed"]
                                                   for e in rows]  # fmt: skip
    successes = seen("gong_sync/successful_runs")
    assert len(successes) == 1
    errors = seen("gong_sync/errors")
    assert errors  # the failed run's ERROR lines, each labelled with its source
    drift = seen("gong_sync/unrepaired_drift")
    assert [e["jsonPayload"]["verify"]["remaining"]["calls"]["missing"] for e in drift] == [1]
    checked = {"gong_sync/rows_synced": rows, "gong_sync/successful_runs": successes,
               "gong_sync/errors": errors, "gong_sync/bytes_billed": billed,
               "gong_sync/unrepaired_drift": drift}  # fmt: skip
    assert checked.keys() == metrics.keys()  # a new metric is checked here too
    for name, found in checked.items():
        (label,) = metrics[name]["labelExtractors"].values()
        assert {extract(label, e) for e in found} == {"calls"}, name
