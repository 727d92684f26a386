"""Settings from the environment: the README's defaults, every variable, and clear errors.

Only the public API is used (Settings.from_env and the dataclasses), so the tests hold
whatever helpers from_env is made of.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from gong_sync import sources
from gong_sync.settings import (
    EMULATOR_PROJECT,
    BigQuerySettings,
    CloudSettings,
    ConfigError,
    PostgresSettings,
    Settings,
)

# Every variable from_env reads besides the GONG_SYNC_ ones.
OTHER_VARIABLES = (
    "INSTANCE_CONNECTION_NAME",
    "BIGQUERY_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "PUBSUB_EMULATOR_HOST",
    "PUBSUB_PROJECT_ID",
)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any variable that settings read; set them per test."""
    for name in list(os.environ):
        if name.startswith("GONG_SYNC_") or name in OTHER_VARIABLES:
            monkeypatch.delenv(name)
    return monkeypatch


def read(environ: pytest.MonkeyPatch, **variables: str) -> Settings:
    """Settings.from_env() with these variables set in the process environment."""
    for name, value in variables.items():
        environ.setenv(name, value)
    return Settings.from_env()


def config_error(**variables: str) -> str:
    """The message of the ConfigError these variables give."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(variables)
    return str(caught.value)


Getter = Callable[[Settings], Any]

# (variable, a value, what it sets, the value it sets, the default when unset or empty)
VARIABLES: list[tuple[str, str, Getter, Any, Any]] = [
    ("GONG_SYNC_DB_HOST", "db.internal", lambda s: s.postgres.host, "db.internal", None),
    ("GONG_SYNC_DB_PORT", "6543", lambda s: s.postgres.port, 6543, 5432),
    ("GONG_SYNC_DB_NAME", "sync2", lambda s: s.postgres.database, "sync2", "gong_sync"),
    ("GONG_SYNC_DB_USER", "svc", lambda s: s.postgres.user, "svc", "postgres"),
    ("GONG_SYNC_DB_PASSWORD", "pw", lambda s: s.postgres.password, "pw", None),
    ("INSTANCE_CONNECTION_NAME", "p:r:i", lambda s: s.postgres.instance_connection_name,
     "p:r:i", None),
    ("GONG_SYNC_DB_IP_TYPE", "private", lambda s: s.postgres.ip_type, "PRIVATE", "PUBLIC"),
    ("GONG_SYNC_DB_STATEMENT_TIMEOUT_SECONDS", "120",
     lambda s: s.postgres.statement_timeout_seconds, 120.0, None),
    ("GONG_SYNC_BQ_PROJECT", "bq-proj", lambda s: s.bigquery.project, "bq-proj", None),
    ("BIGQUERY_EMULATOR_HOST", "localhost:9050", lambda s: s.bigquery.emulator_host,
     "localhost:9050", None),
    ("BIGQUERY_STORAGE_EMULATOR_HOST", "localhost:9060",
     lambda s: s.bigquery.storage_emulator_host, "localhost:9060", None),
    ("GONG_SYNC_BQ_READ_API", "REST", lambda s: s.bigquery.read_api, "rest", "storage"),
    ("GONG_SYNC_BQ_LOCATION", "EU", lambda s: s.bigquery.location, "EU", None),
    ("GONG_SYNC_GONG_DATASET", "gong_x", lambda s: s.bigquery.gong_dataset, "gong_x",
     "gongio_ft"),
    ("GONG_SYNC_SALESFORCE_DATASET", "sf_x", lambda s: s.bigquery.salesforce_dataset, "sf_x",
     "salesforce"),
    ("GONG_SYNC_TABLES", "users=gong_users", lambda s: dict(s.bigquery.table_overrides),
     {"users": "gong_users"}, {}),
    ("GONG_SYNC_BQ_RETRY_SECONDS", "2.5", lambda s: s.bigquery.retry_seconds, 2.5, 120.0),
    ("GONG_SYNC_BQ_REQUEST_TIMEOUT_SECONDS", "30",
     lambda s: s.bigquery.request_timeout_seconds, 30.0, 60.0),
    ("GONG_SYNC_PROJECT", "ps-proj", lambda s: s.cloud.project, "ps-proj", None),
    ("GONG_SYNC_TRIGGER_TOPIC", "t2", lambda s: s.cloud.trigger_topic, "t2", "sync-trigger"),
    ("GONG_SYNC_DEAD_LETTER_TOPIC", "d2", lambda s: s.cloud.dead_letter_topic, "d2",
     "sync-dead-letter"),
    ("GONG_SYNC_TIME_BUDGET_SECONDS", "100", lambda s: s.cloud.time_budget_seconds, 100.0, 480.0),
    ("GONG_SYNC_TIME_LIMIT_SECONDS", "300", lambda s: s.cloud.time_limit_seconds, 300.0, 540.0),
    ("GONG_SYNC_MAX_EVENT_AGE_SECONDS", "60", lambda s: s.cloud.max_event_age_seconds, 60,
     3600),
    ("GONG_SYNC_DB_PASSWORD_SECRET", "projects/p/secrets/db",
     lambda s: s.cloud.db_password_secret, "projects/p/secrets/db", None),
    ("GONG_SYNC_SLACK_WEBHOOK_SECRET", "projects/p/secrets/slack",
     lambda s: s.cloud.slack_webhook_secret, "projects/p/secrets/slack", None),
    ("GONG_SYNC_SLACK_WEBHOOK_URL", "https://hooks.example/x",
     lambda s: s.cloud.slack_webhook_url, "https://hooks.example/x", None),
    ("GONG_SYNC_PAGE_SIZE", "7", lambda s: s.page_size, 7, 5000),
    ("GONG_SYNC_PAGES_PER_QUERY", "3", lambda s: s.pages_per_query, 3, 200),
    ("GONG_SYNC_LOOKBACK_SECONDS", "0", lambda s: s.lookback, timedelta(0), timedelta(hours=1)),
    ("GONG_SYNC_LOCAL_DIR", "/tmp/x", lambda s: s.local_dir, "/tmp/x", ".local"),  # noqa: S108
    ("GONG_SYNC_VERIFY_SAMPLE_DAYS", "0", lambda s: s.verify_sample_days, 0, 8),
]  # fmt: skip
IDS = [v[0] for v in VARIABLES]

INTEGERS = [
    ("GONG_SYNC_DB_PORT", 1),
    ("GONG_SYNC_PAGE_SIZE", 1),
    ("GONG_SYNC_PAGES_PER_QUERY", 1),
    ("GONG_SYNC_LOOKBACK_SECONDS", 0),
    ("GONG_SYNC_MAX_EVENT_AGE_SECONDS", 1),
    ("GONG_SYNC_VERIFY_SAMPLE_DAYS", 0),
]
SECONDS = [
    "GONG_SYNC_DB_STATEMENT_TIMEOUT_SECONDS",
    "GONG_SYNC_BQ_RETRY_SECONDS",
    "GONG_SYNC_BQ_REQUEST_TIMEOUT_SECONDS",
    "GONG_SYNC_TIME_BUDGET_SECONDS",
    "GONG_SYNC_TIME_LIMIT_SECONDS",
]


# ---------------------------------------------------------------------------------------------
# Defaults and every variable.


def test_an_empty_environment_gives_the_documented_defaults(environ: pytest.MonkeyPatch) -> None:
    """Nothing set: the embedded stack, the README's numbers, and the dataclasses' defaults."""
    settings = read(environ)
    assert settings == Settings()
    assert not settings.postgres.is_external
    assert not settings.bigquery.is_external
    assert (settings.page_size, settings.pages_per_query) == (5000, 200)
    assert settings.lookback == timedelta(hours=1)
    assert settings.postgres.statement_timeout_seconds is None  # no limit
    assert settings.cloud.project is None


@pytest.mark.parametrize(("name", "value", "get", "expected", "default"), VARIABLES, ids=IDS)
def test_each_variable_sets_its_setting(
    environ: pytest.MonkeyPatch, name: str, value: str, get: Getter, expected: Any, default: Any
) -> None:
    """A set variable changes its own setting, and no other."""
    settings = read(environ, **{name: value})
    assert get(settings) == expected
    others = [g for n, _, g, _, d in VARIABLES if n != name and g(settings) != d]
    # GONG_SYNC_BQ_PROJECT is also the Pub/Sub project's last fallback.
    assert len(others) == (1 if name == "GONG_SYNC_BQ_PROJECT" else 0)


@pytest.mark.parametrize(("name", "value", "get", "expected", "default"), VARIABLES, ids=IDS)
def test_an_empty_variable_means_its_default(
    environ: pytest.MonkeyPatch, name: str, value: str, get: Getter, expected: Any, default: Any
) -> None:
    """NAME= (set but empty, as deployment templates leave it) is the same as unset."""
    assert get(read(environ, **{name: ""})) == default


def test_an_explicit_mapping_is_read_instead_of_the_process_environment(
    environ: pytest.MonkeyPatch,
) -> None:
    """from_env(mapping) sees only the mapping."""
    environ.setenv("GONG_SYNC_PAGE_SIZE", "7")
    assert Settings.from_env({}).page_size == 5000
    assert Settings.from_env({"GONG_SYNC_PAGE_SIZE": "9"}).page_size == 9
    assert Settings.from_env().page_size == 7


def test_numbers_may_carry_spaces_and_signs() -> None:
    """int() and float() rules: surrounding spaces and a + sign are fine."""
    settings = Settings.from_env(
        {"GONG_SYNC_PAGE_SIZE": " 10 ", "GONG_SYNC_BQ_RETRY_SECONDS": "+1e1"}
    )
    assert (settings.page_size, settings.bigquery.retry_seconds) == (10, 10.0)


@pytest.mark.parametrize(("value", "expected"), [("PRIVATE", "PRIVATE"), ("Public", "PUBLIC")])
def test_the_ip_type_is_case_insensitive(value: str, expected: str) -> None:
    """Cloud SQL's PUBLIC or PRIVATE, in any case."""
    settings = Settings.from_env({"GONG_SYNC_DB_IP_TYPE": value})
    assert settings.postgres.ip_type == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("users=gong_users", {"users": "gong_users"}),
        (" users = gong_users , call=calls_v2,", {"users": "gong_users", "call": "calls_v2"}),
        ("email=proj.other_ds.email", {"email": "proj.other_ds.email"}),
    ],
)
def test_table_overrides_are_logical_equals_real_pairs(
    value: str, expected: dict[str, str]
) -> None:
    """Comma-separated, spaces trimmed, a trailing comma allowed."""
    assert Settings.from_env({"GONG_SYNC_TABLES": value}).bigquery.table_overrides == expected


@pytest.mark.parametrize(
    ("variables", "project"),
    [
        ({"GONG_SYNC_PROJECT": "a", "GOOGLE_CLOUD_PROJECT": "b", "GONG_SYNC_BQ_PROJECT": "c"}, "a"),
        ({"GOOGLE_CLOUD_PROJECT": "b", "GONG_SYNC_BQ_PROJECT": "c"}, "b"),
        ({"GONG_SYNC_BQ_PROJECT": "c", "PUBSUB_EMULATOR_HOST": "localhost:8085"}, "c"),
        ({"PUBSUB_EMULATOR_HOST": "localhost:8085", "PUBSUB_PROJECT_ID": "emu"}, "emu"),
        ({"PUBSUB_EMULATOR_HOST": "localhost:8085"}, EMULATOR_PROJECT),
        ({"PUBSUB_PROJECT_ID": "emu"}, None),  # no emulator: its project means nothing
        ({"GONG_SYNC_PROJECT": "", "GOOGLE_CLOUD_PROJECT": "b"}, "b"),
    ],
)  # fmt: skip
def test_the_pubsub_project_falls_back_in_the_documented_order(
    environ: pytest.MonkeyPatch, variables: dict[str, str], project: str | None
) -> None:
    """GONG_SYNC_PROJECT, GOOGLE_CLOUD_PROJECT, GONG_SYNC_BQ_PROJECT, then the emulator's."""
    assert read(environ, **variables).cloud.project == project


def test_a_named_server_or_project_turns_the_embedded_stack_off() -> None:
    """A host or Cloud SQL instance: external Postgres; a project or emulator: external BQ."""
    assert Settings.from_env({"GONG_SYNC_DB_HOST": "h"}).postgres.is_external
    assert Settings.from_env({"INSTANCE_CONNECTION_NAME": "p:r:i"}).postgres.is_external
    assert Settings.from_env({"GONG_SYNC_BQ_PROJECT": "p"}).bigquery.is_external
    assert Settings.from_env({"BIGQUERY_EMULATOR_HOST": "h:1"}).bigquery.is_external


def test_secrets_never_appear_in_the_settings_repr() -> None:
    """The password and the webhook URL stay out of any log line that prints settings."""
    settings = Settings.from_env(
        {"GONG_SYNC_DB_PASSWORD": "pw-sentinel", "GONG_SYNC_SLACK_WEBHOOK_URL": "https://hook-x"}
    )
    for shown in (repr(settings), str(settings), repr(settings.cloud), repr(settings.postgres)):
        assert "pw-sentinel" not in shown
        assert "hook-x" not in shown


def test_settings_are_immutable() -> None:
    """Frozen: a run cannot change another run's settings."""
    settings = Settings.from_env({})
    for obj in (settings, settings.postgres, settings.bigquery, settings.cloud):
        field = dataclasses.fields(obj)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)


def test_topic_paths_need_a_project_unless_already_full() -> None:
    """A short topic name gets the project; a full path is kept; no project is a ConfigError."""
    cloud = Settings.from_env({"GONG_SYNC_PROJECT": "p1"}).cloud
    assert cloud.topic_path("sync-trigger") == "projects/p1/topics/sync-trigger"
    assert cloud.topic_path("projects/p2/topics/t") == "projects/p2/topics/t"
    assert CloudSettings().topic_path("projects/p2/topics/t") == "projects/p2/topics/t"
    with pytest.raises(ConfigError) as caught:
        CloudSettings().topic_path("sync-trigger")
    assert str(caught.value) == (
        "topic 'sync-trigger' needs a project: set GONG_SYNC_PROJECT or use projects/P/topics/T"
    )


def test_the_dataclasses_default_to_the_embedded_stack() -> None:
    """Constructed directly (as tests and the local stack do), nothing is external."""
    assert not PostgresSettings().is_external
    assert not BigQuerySettings().is_external
    assert BigQuerySettings().table_overrides == {}


# ---------------------------------------------------------------------------------------------
# Bad values: a ConfigError that names the variable and says what it must be.


@pytest.mark.parametrize("name", [n for n, _ in INTEGERS])
@pytest.mark.parametrize("value", ["lots", "1.5", "5 000"])
def test_a_non_integer_is_rejected_naming_the_variable(name: str, value: str) -> None:
    """Counts and ports are whole numbers."""
    assert config_error(**{name: value}) == f"{name} must be a whole number, got {value!r}"


@pytest.mark.parametrize(("name", "minimum"), INTEGERS)
def test_an_integer_below_its_minimum_is_rejected_naming_the_variable(
    name: str, minimum: int
) -> None:
    """Ports, page sizes and ages start at 1; the lookback may be 0."""
    Settings.from_env({name: str(minimum)})  # the minimum itself is fine
    below = minimum - 1
    assert config_error(**{name: str(below)}) == f"{name} must be at least {minimum}, got {below}"


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("value", ["12s", "1,5"])
def test_a_non_number_of_seconds_is_rejected_naming_the_variable(name: str, value: str) -> None:
    """Durations are plain numbers of seconds."""
    assert config_error(**{name: value}) == f"{name} must be a number of seconds, got {value!r}"


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize(("value", "shown"), [("0", "0.0"), ("-5", "-5.0")])
def test_a_duration_that_is_not_positive_is_rejected_naming_the_variable(
    name: str, value: str, shown: str
) -> None:
    """Zero is no limit only by leaving the variable unset, never by 0."""
    assert config_error(**{name: value}) == f"{name} must be positive, got {shown}"


def test_an_unknown_ip_type_is_rejected_with_the_choices() -> None:
    """The message lists what is allowed."""
    assert config_error(GONG_SYNC_DB_IP_TYPE="vpc") == (
        "GONG_SYNC_DB_IP_TYPE must be one of PUBLIC, PRIVATE, got 'VPC'"
    )


@pytest.mark.parametrize(
    ("value", "entry"),
    [("users", "users"), ("=gong_users", "=gong_users"), ("users=", "users="),
     ("users=a,call", "call"), (" = ", " = ")],
)  # fmt: skip
def test_a_malformed_table_override_is_rejected_quoting_the_entry(value: str, entry: str) -> None:
    """The message quotes the bad entry, not the whole list."""
    assert config_error(GONG_SYNC_TABLES=value) == (
        f"GONG_SYNC_TABLES entries must look like logical=real, got {entry!r}"
    )


def test_config_errors_are_value_errors() -> None:
    """Callers that catch ValueError (the CLI's argument handling) also catch these."""
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------
# Defects these tests found (fixed with them).


@pytest.mark.parametrize("name", SECONDS)
def test_nan_is_not_a_number_of_seconds(name: str) -> None:
    """NaN is no duration; it is rejected like any other bad value, naming the variable."""
    assert config_error(**{name: "nan"}).startswith(f"{name} must be")


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [("GONG_SYNC_TABLES", "users=a,call=b, users=c", "users"),
     ("GONG_SYNC_MAX_BYTES_BILLED_BY_SOURCE", "calls=1GiB,calls=2GiB", "calls"),
     ("GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE", "emails=0.1,emails=0.2", "emails")],
)  # fmt: skip
def test_a_key_given_twice_is_rejected(name: str, value: str, key: str) -> None:
    """The last one silently won: which was meant cannot be told."""
    assert config_error(**{name: value}) == f"{name} gives {key!r} twice; give each once"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [("GONG_SYNC_TABLES", "speakers=gong_speakers", "speakers"),
     ("GONG_SYNC_MAX_BYTES_BILLED_BY_SOURCE", "call=1GiB", "call"),
     ("GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE", "Emails=0.1", "Emails")],
)  # fmt: skip
def test_a_key_that_names_nothing_is_rejected_with_the_names(
    name: str, value: str, key: str
) -> None:
    """A typo was ignored: the table it meant to rename was read under its default name."""
    message = config_error(**{name: value})
    assert message.startswith(f"{name}: {key!r} is not one of ")
    assert ("call_speaker" if name == "GONG_SYNC_TABLES" else "calls, contacts") in message


def test_every_table_a_declaration_reads_may_be_renamed() -> None:
    """Fallback declarations included: their tables are real tables too."""
    for source in sources.SOURCES.values():
        for declared in (source, source.fallback):
            for table in declared.tables() if declared else []:
                env = {"GONG_SYNC_TABLES": f"{table}=renamed_{table}"}
                assert Settings.from_env(env).bigquery.table_overrides == {
                    table: f"renamed_{table}"
                }
