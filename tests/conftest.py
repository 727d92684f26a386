"""Real services for the tests: one Postgres server and one BigQuery emulator per session."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from gong_sync import migrate, sources, verify
from gong_sync.bigquery_reader import BigQueryReader, make_client
from gong_sync.dead_letters import PostgresDeadLetterSink
from gong_sync.local import fivetran_schemas
from gong_sync.local.bigquery_emulator import LocalBigQuery
from gong_sync.local.postgres_server import LocalPostgres
from gong_sync.postgres import Connection, connect
from gong_sync.runs import RunOptions, RunStats
from gong_sync.settings import BigQuerySettings, PostgresSettings, Settings
from gong_sync.sync import run_source

_counter = itertools.count()
# The emulator's REST host -> its Storage Read (gRPC) host.
_storage_hosts: dict[str, str] = {}


def run_cli(overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `gong-sync` as a user would, with only the given gong-sync settings in its env."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GONG_SYNC_", "BIGQUERY_EMULATOR", "INSTANCE_CONNECTION"))
    }
    return subprocess.run(
        [sys.executable, "-m", "gong_sync.cli", "--log-format", "json", *args],
        env={**environ, **overrides},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def reachable_tmp(factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder the unprivileged Postgres user can reach even when pytest's tmp is private."""
    path = factory.mktemp(name)
    if os.geteuid() == 0:
        for parent in [path, *path.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
    return path


def start_postgres(
    factory: pytest.TempPathFactory, name: str
) -> tuple[LocalPostgres, PostgresSettings]:
    """Start a real Postgres 18 server of its own, with the migrated template database."""
    server = LocalPostgres(reachable_tmp(factory, name) / "data", database="template_sync")
    settings = server.start()
    conn = connect(settings)
    migrate.apply(conn)
    conn.close()
    return server, settings


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresSettings]:
    """A real Postgres 18 server, with a migrated template database."""
    server, settings = start_postgres(tmp_path_factory, "pg")
    yield settings
    server.stop()


@pytest.fixture(scope="session")
def bq_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running BigQuery emulator."""
    emulator = LocalBigQuery(tmp_path_factory.mktemp("bq"))
    host = emulator.start()
    _storage_hosts[host] = emulator.grpc_host or ""
    yield host
    emulator.stop()


def fresh_database(server: PostgresSettings) -> PostgresSettings:
    """A new database cloned from the migrated template."""
    name = f"t{os.getpid()}_{next(_counter)}"
    admin = connect(server, database="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "template_sync"')
    admin.close()
    return dataclasses.replace(server, database=name)


def fresh_datasets(client: bigquery.Client) -> BigQuerySettings:
    """Empty Fivetran-shaped Gong and Salesforce datasets of a test's own."""
    n = f"{os.getpid()}_{next(_counter)}"
    datasets = {"gong": f"gong_{n}", "salesforce": f"sf_{n}"}
    fivetran_schemas.create_tables(client, client.project, datasets)
    return BigQuerySettings(
        project=client.project,
        emulator_host=None,
        gong_dataset=datasets["gong"],
        salesforce_dataset=datasets["salesforce"],
    )


@dataclasses.dataclass
class Env:
    """One test's world: its own database, its own datasets, and a way to sync."""

    settings: Settings
    bq: bigquery.Client

    def connect(self) -> Connection:
        """A new connection to the test database."""
        return connect(self.settings.postgres)

    def sync(self, source: str = "calls", **options: Any) -> RunStats:
        """Run one source through the real engine."""
        reader = BigQueryReader(self.bq, self.settings.bigquery)
        return run_source(
            sources.get(source),
            self.settings,
            reader,
            self.connect,
            PostgresDeadLetterSink,
            RunOptions(**options),
        )

    def settle(self, source: str = "calls") -> RunStats:
        """The day ends: touches deferred to it (a user's calls) fall due, and a run that reads
        no row (a window from now on) derives them, so no re-read derives them by chance."""
        self.execute("UPDATE pending_derivations SET due = now() WHERE due > now()")
        return self.sync(source, since=datetime.now(UTC))

    def verify(self, source: str, sample: int = 500) -> verify.SourceReport:
        """Compare one source with BigQuery, as `gong-sync verify` does."""
        reader = BigQueryReader(self.bq, self.settings.bigquery)
        conn = self.connect()
        try:
            return verify.verify_source(sources.get(source), self.settings, reader, conn, sample)
        finally:
            conn.close()

    def reconcile(self, source: str, sample: int = 500) -> verify.SourceReport:
        """Verify and, unless clean, fix, as `gong-sync verify --fix` does; check again."""
        report = self.verify(source, sample)
        if not report.clean:
            reader = BigQueryReader(self.bq, self.settings.bigquery)
            verify.fix(
                sources.get(source), report, self.settings, reader, self.connect,
                PostgresDeadLetterSink,
            )  # fmt: skip
        return self.verify(source, sample)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a Postgres query."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def execute(self, sql: str, *args: Any) -> int:
        """Run and commit one Postgres statement (an edit by hand); return its row count."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, args)
            conn.commit()
            return cur.rowcount
        finally:
            conn.close()

    @property
    def environ(self) -> dict[str, str]:
        """The environment that points gong-sync at this test's database and datasets."""
        s = self.settings
        return {
            "GONG_SYNC_DB_HOST": s.postgres.host or "",
            "GONG_SYNC_DB_PORT": str(s.postgres.port),
            "GONG_SYNC_DB_NAME": s.postgres.database,
            "BIGQUERY_EMULATOR_HOST": s.bigquery.emulator_host or "",
            "BIGQUERY_STORAGE_EMULATOR_HOST": s.bigquery.storage_emulator_host or "",
            "GONG_SYNC_BQ_READ_API": s.bigquery.read_api,
            "GONG_SYNC_BQ_PROJECT": self.bq.project,
            "GONG_SYNC_GONG_DATASET": s.bigquery.gong_dataset,
            "GONG_SYNC_SALESFORCE_DATASET": s.bigquery.salesforce_dataset,
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """gong-sync pointed at this test's own database and datasets."""
        return run_cli(self.environ, *args)

    @property
    def datasets(self) -> dict[str, str]:
        """Role -> dataset id."""
        b = self.settings.bigquery
        return {"gong": b.gong_dataset, "salesforce": b.salesforce_dataset}


def make_env(pg_server: PostgresSettings, bq_host: str) -> Env:
    """A fresh database and fresh empty source datasets, with small pages to force paging."""
    client = make_client(BigQuerySettings(emulator_host=bq_host, project="gong-sync-test"))
    bq_settings = dataclasses.replace(
        fresh_datasets(client),
        emulator_host=bq_host,
        storage_emulator_host=_storage_hosts.get(bq_host),
    )
    # Pages of 7, two per query: tests cross page and query boundaries with little data.
    settings = Settings(
        postgres=fresh_database(pg_server), bigquery=bq_settings, page_size=7, pages_per_query=2
    )
    return Env(settings, client)


@pytest.fixture
def env(pg_server: PostgresSettings, bq_host: str) -> Env:
    """A test's own database and datasets."""
    return make_env(pg_server, bq_host)


# The session's servers: a test that reaches any of them (directly or through a fixture) is
# in the services layer; `make test-fast` runs the others. A module that starts services of
# its own says so with `pytestmark = pytest.mark.services`.
SERVICE_FIXTURES = frozenset({"pg_server", "bq_host", "pubsub_host"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a running service."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def require(present: bool, reason: str) -> None:
    """Skip without a service here; fail in CI, which must run every test."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must run these tests")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pubsub_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Google's Pub/Sub emulator; required in CI, skipped with a reason elsewhere if absent."""
    from gong_sync.local.pubsub_emulator import ENV_VAR, PubSubEmulator, emulator_binary

    require(emulator_binary() is not None,
            "the Pub/Sub emulator (Google Cloud CLI + Java) is not installed")  # fmt: skip
    emulator = PubSubEmulator(tmp_path_factory.mktemp("pubsub"))
    host = emulator.start()  # sets PUBSUB_EMULATOR_HOST; stop() restores the previous value
    assert os.environ[ENV_VAR] == host
    yield host
    emulator.stop()


@dataclasses.dataclass
class Cloud:
    """A test's Pub/Sub topics and the environment the functions read their settings from."""

    env: Env
    project: str
    trigger_topic: str
    dead_letter_topic: str
    dead_letters: str  # a pull subscription on the dead-letter topic
    triggers: str  # a pull subscription on the trigger topic (sees continuations)
    environ: dict[str, str]


@pytest.fixture
def cloud(env: Env, pubsub_host: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """Topics of the test's own, and the function runtime configured from the environment."""
    from gong_sync import alerting, cloud_function
    from tests.pubsub_emulator import create_pull_subscription, create_topic

    n = next(_counter)
    project = "gong-sync-test"
    trigger, dead = f"sync-trigger-{n}", f"sync-dead-letter-{n}"
    create_topic(project, trigger)
    create_topic(project, dead)
    environ = {
        **env.environ,
        "GONG_SYNC_PROJECT": project,
        "GONG_SYNC_TRIGGER_TOPIC": trigger,
        "GONG_SYNC_DEAD_LETTER_TOPIC": dead,
        "GONG_SYNC_PAGE_SIZE": "7",
        "GONG_SYNC_PAGES_PER_QUERY": "2",
        "PUBSUB_EMULATOR_HOST": pubsub_host,
    }
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    cloud_function.runtime.cache_clear()
    alerting.alert_settings.cache_clear()
    yield Cloud(
        env, project, trigger, dead,
        create_pull_subscription(project, f"dl-watch-{n}", dead),
        create_pull_subscription(project, f"trigger-watch-{n}", trigger),
        environ,
    )  # fmt: skip
    cloud_function.runtime.cache_clear()
    alerting.alert_settings.cache_clear()


# The fault matrix's summary (tests/faults): gathered from every test's report here, in the
# root conftest, which the process that prints the summary loads (xdist's controller too).
_SCENARIOS: list[Any] = []  # tests.faults.matrix.Scenario, imported late: it imports us


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.faults.matrix import SUMMARY_PROPERTY, Scenario

    for key, value in report.user_properties:
        if key == SUMMARY_PROPERTY:
            _SCENARIOS.append(Scenario(**value))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    ran = [s for s in _SCENARIOS if s.outcome != "skipped"]
    if not ran:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault matrix")
    width = max(len(s.name) for s in ran)
    for s in ran:
        flag = "" if s.outcome == "passed" else f"  {s.outcome}"
        note = f"  ({s.note})" if s.note else ""
        tr.write_line(
            f"{s.name:<{width}}  {s.checked:>6} rows checked, lost {s.lost},"
            f" duplicated {s.duplicated}{flag}{note}"
        )
    failed = sum(s.outcome != "passed" for s in ran)
    tr.write_line(
        f"fault matrix: {len(ran)} scenarios run{f' ({failed} FAILED)' if failed else ''},"
        f" {sum(s.checked for s in ran)} rows checked, lost {sum(s.lost for s in ran)},"
        f" duplicated {sum(s.duplicated for s in ran)}"
    )
