"""`gong-sync check`, the preflight: each broken prerequisite is one clear failing line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import bigquery, pubsub_v1

from gong_sync import check, live_check, sources
from gong_sync.bigquery_reader import BigQueryReader
from tests.conftest import Env, run_cli
from tests.factories import at, insert, insert_account_and_owner, opportunity
from tests.storage_standins import Refusing, serving


def _check(env: Env, pubsub: str, **environ: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run the real command against this test's services; its exit status and findings."""
    done = run_cli({**env.environ, "PUBSUB_EMULATOR_HOST": pubsub, **environ}, "check", "--json")
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, {f["check"]: f for f in json.loads(done.stdout)}


def _errors(findings: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: f["message"] for name, f in findings.items() if f["level"] == "error"}


def test_a_complete_setup_passes_and_projects_the_hourly_cost(env: Env, pubsub_host: str) -> None:
    """Every table found, every column there; each source says what its hourly run reads."""
    status, findings = _check(env, pubsub_host)
    assert status == 0, _errors(findings)
    assert findings["postgres"]["level"] == "ok"
    assert findings["bigquery storage read"]["level"] == "ok"
    assert (
        "read sessions allowed (2 rows read back)" in findings["bigquery storage read"]["message"]
    )
    # Before the first deploy the topics do not exist: `pulumi up` creates them.
    assert findings["pubsub sync-trigger"]["level"] == "warning"
    hourly = findings["calls: hourly run"]["details"]
    # At least 10 MB for each table a query names, the on-demand minimum, every hour.
    assert hourly["bytes_per_run"] >= 10 * 2**20 * len(hourly["queries"])
    assert hourly["bytes_per_month"] == hourly["bytes_per_run"] * 24 * 30
    table = findings["calls: table transcript"]
    assert table["level"] == "warning"  # not clustered on _fivetran_synced
    assert "_fivetran_synced" in table["message"]


def test_a_table_clustered_on_its_cursor_is_reported_as_pruned(env: Env, pubsub_host: str) -> None:
    """The table BigQuery can prune on the cursor loses its warning."""
    ref = f"{env.bq.project}.{env.datasets['gong']}.email"
    schema = env.bq.get_table(ref).schema
    env.bq.delete_table(ref)
    table = bigquery.Table(ref, schema=schema)
    table.clustering_fields = ["_fivetran_synced"]
    env.bq.create_table(table)
    status, findings = _check(env, pubsub_host)
    assert status == 0, _errors(findings)
    assert findings["emails: table email"]["level"] == "ok"
    assert "pruned" in findings["emails: table email"]["message"]


def test_a_refused_read_session_is_a_warning_that_names_the_role(
    env: Env, pubsub_host: str
) -> None:
    """Runs still work over REST, more slowly: the preflight says what to grant, and passes."""
    with serving(Refusing()) as refusing:
        status, findings = _check(env, pubsub_host, BIGQUERY_STORAGE_EMULATOR_HOST=refusing)
    assert status == 0, _errors(findings)
    found = findings["bigquery storage read"]
    assert found["level"] == "warning"
    assert "readsessions.create denied" in found["message"]
    assert "roles/bigquery.readSessionUser" in found["message"]


def test_a_missing_table_fails_with_its_name(env: Env, pubsub_host: str) -> None:
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['gong']}.transcript")
    status, findings = _check(env, pubsub_host)
    assert status == 1
    errors = _errors(findings)
    assert list(errors) == ["calls: table transcript"]
    assert "transcript" in errors["calls: table transcript"]
    assert "Not found" in errors["calls: table transcript"]


def test_a_missing_column_fails_with_its_name(env: Env, pubsub_host: str) -> None:
    ref = f"{env.bq.project}.{env.datasets['gong']}.email"
    schema = [f for f in env.bq.get_table(ref).schema if f.name != "subject"]
    env.bq.delete_table(ref)
    env.bq.create_table(bigquery.Table(ref, schema=schema))
    status, findings = _check(env, pubsub_host)
    assert status == 1
    errors = _errors(findings)
    assert list(errors) == ["emails: columns"]
    assert "'subject'" in errors["emails: columns"]
    assert ".email" in errors["emails: columns"]


def test_a_missing_salesforce_table_falls_back_with_a_warning(env: Env, pubsub_host: str) -> None:
    """Opportunities read Gong's CRM context without Salesforce: a warning, not a failure."""
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.opportunity")
    _, findings = _check(env, pubsub_host)
    assert findings["opportunities: declaration"]["level"] == "warning"
    assert "fallback" in findings["opportunities: declaration"]["message"]
    assert findings["opportunities: hourly run"]["level"] == "ok"


def test_a_salesforce_table_gone_after_a_sync_is_an_error(env: Env, pubsub_host: str) -> None:
    """The source has read Salesforce: its runs refuse the fallback, and check says so."""
    insert_account_and_owner(env.bq, env.datasets)
    insert(env.bq, env.datasets, "opportunity", [opportunity("006A", at(0))])
    assert env.sync("opportunities").status == "success"
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.opportunity")
    status, findings = _check(env, pubsub_host)
    assert status == 1
    message = _errors(findings)["opportunities: declaration"]
    assert "has read account, opportunity, user before" in message
    assert "refuse the fallback" in message


def test_a_database_no_run_has_migrated_has_read_nothing(env: Env) -> None:
    """The preflight before the first deploy: no run state to read, so no stream was read."""
    env.execute("DROP TABLE sync_streams_read")
    assert check._streams_read(env.settings) == {}


def test_a_missing_account_table_is_an_error_not_the_fallback(env: Env, pubsub_host: str) -> None:
    """As a run: only a missing opportunity table means there is no Salesforce to read."""
    env.bq.delete_table(f"{env.bq.project}.{env.datasets['salesforce']}.account")
    status, findings = _check(env, pubsub_host)
    assert status == 1
    assert "opportunities: table account" in _errors(findings)
    assert "opportunities: declaration" not in findings


def test_unreachable_postgres_fails_with_one_line(env: Env, pubsub_host: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, findings = _check(env, pubsub_host, GONG_SYNC_DB_PORT=str(port))
    assert status == 1
    assert list(_errors(findings)) == ["postgres"]
    assert str(port) in findings["postgres"]["message"] or "refused" in (
        findings["postgres"]["message"].lower()
    )


def test_deployed_topics_pass(env: Env, pubsub_host: str) -> None:
    """Once the topics exist, the Pub/Sub lines pass (the emulator has no IAM to test)."""
    project = env.bq.project
    with pubsub_v1.PublisherClient() as publisher:
        for topic in ("sync-trigger", "sync-dead-letter"):
            with contextlib.suppress(AlreadyExists):
                publisher.create_topic(name=f"projects/{project}/topics/{topic}")
    status, findings = _check(env, pubsub_host)
    assert status == 0, _errors(findings)
    assert findings["pubsub sync-trigger"]["level"] == "ok"
    assert findings["pubsub sync-dead-letter"]["level"] == "ok"


def test_live_fails_when_no_run_ends_in_time(env: Env) -> None:
    """Triggers that no function answers: one failing line per source, none verified."""
    published: list[str] = []
    reader = BigQueryReader(env.bq, env.settings.bigquery)
    settings = dataclasses.replace(
        env.settings, cloud=dataclasses.replace(env.settings.cloud, project="p")
    )
    findings = live_check.run(
        settings, reader, timeout=0.1, sample=5, publish=lambda t, d, a: published.append(t)
    )
    assert published == ["projects/p/topics/sync-trigger"] * len(sources.SOURCES)
    assert {f.check: f.level for f in findings} == {
        f"live {name}: run": "error" for name in sources.SOURCES
    }
    assert check.failed(findings)


def test_live_reports_a_failed_run_and_verifies_the_others(env: Env) -> None:
    """A source whose run failed is an error; the others are verified."""
    reader = BigQueryReader(env.bq, env.settings.bigquery)

    def publish(topic: str, data: bytes, attributes: dict[str, str]) -> None:
        # What the deployed functions would record once they ran.
        status = "failed" if attributes["source"] == "emails" else "success"
        env.execute(
            "INSERT INTO sync_runs (run_id, source, status) VALUES (%s, %s, %s)",
            f"run-{attributes['source']}", attributes["source"], status,
        )  # fmt: skip

    settings = dataclasses.replace(
        env.settings, cloud=dataclasses.replace(env.settings.cloud, project="p")
    )
    findings = {f.check: f for f in live_check.run(settings, reader, 5, 5, publish)}
    assert findings["live emails: run"].level == "error"
    assert "live emails: verify" not in findings
    assert findings["live calls: run"].level == "ok"
    assert findings["live calls: verify"].level == "ok"  # empty on both sides
