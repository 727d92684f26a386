"""One typed settings object, read from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeVar

from gong_sync import sources

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).upper()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):  # NaN would make every deadline comparison false
        raise ConfigError(f"{name} must be a finite number of seconds, got {raw!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class PostgresSettings:
    """Where the target database is; host unset means the embedded local server."""

    host: str | None = None
    port: int = 5432
    database: str = "gong_sync"
    user: str = "postgres"
    # repr=False keeps the password out of any log line that prints the settings.
    password: str | None = field(default=None, repr=False)
    instance_connection_name: str | None = None
    ip_type: str = "PUBLIC"  # how the Cloud SQL connector reaches the instance: PUBLIC or PRIVATE
    # Postgres cancels a statement that runs longer (None: no limit, as for a verify by hand).
    statement_timeout_seconds: float | None = None

    @property
    def is_external(self) -> bool:
        """True when the environment names a server, so no embedded one is started."""
        return bool(self.host or self.instance_connection_name)


# The largest scan of an hourly run at 1M calls / 50M transcript rows / 1M emails, unclustered,
# is about 10 GB (emails' bodies; README, Cost): ten times that is a runaway, not growth.
DEFAULT_MAX_BYTES_BILLED = 100 * 2**30
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_size(name: str, raw: str) -> int:
    """A byte count such as 50000000000, 50GB or 100GiB; a ConfigError names the setting."""
    text = raw.strip().upper().replace(" ", "")
    digits = text.rstrip("KMGTIB")
    unit = _SIZE_UNITS.get(text[len(digits) :])
    try:
        value = int(digits) * unit if unit is not None else -1
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(
            f"{name} must be a positive size in bytes such as 100GiB or 50GB, got {raw!r}"
        )
    return value


def _pairs(
    env: Mapping[str, str],
    name: str,
    shape: str,
    value: Callable[[str, str], T],
    known: Callable[[], Collection[str]],
) -> dict[str, T]:
    """A `key=value,...` setting; `value(label, text)` reads (and checks) each value.

    A key given twice, or one that names nothing, is an error: either would otherwise be
    ignored in silence (a typo in a table's name reads the table it meant to replace).
    """
    out: dict[str, T] = {}
    for pair in filter(None, (env.get(name) or "").split(",")):
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"{name} entries must look like {shape}, got {pair!r}")
        if key in out:
            raise ConfigError(f"{name} gives {key!r} twice; give each once")
        names = known()
        if key not in names:
            raise ConfigError(f"{name}: {key!r} is not one of {', '.join(sorted(names))}")
        out[key] = value(f"{name} ({key})", text)
    return out


def _source_names() -> list[str]:
    return list(sources.SOURCES)


def _table_names() -> set[str]:
    declared = [*sources.SOURCES.values()]
    declared += [s.fallback for s in declared if s.fallback is not None]
    return {table for source in declared for table in source.tables()}


@dataclass(frozen=True)
class BigQuerySettings:
    """Which project and datasets to read; no project means the embedded emulator."""

    project: str | None = None
    emulator_host: str | None = None
    # The emulator's gRPC host:port for the Storage Read API; without it an emulator is
    # read over REST only.
    storage_emulator_host: str | None = None
    # "storage": large results over the Storage Read API, REST as the fallback; "rest": never.
    read_api: Literal["storage", "rest"] = "storage"
    location: str | None = None
    gong_dataset: str = "gongio_ft"
    salesforce_dataset: str = "salesforce"
    # Logical table name -> real table name, for customers whose Fivetran schema differs.
    table_overrides: Mapping[str, str] = field(default_factory=dict)
    retry_seconds: float = 120.0  # how long transient BigQuery errors are retried
    # Each API request, and the wait for a query to finish: a response that never comes is
    # then a retried timeout rather than a run that hangs until the function is killed.
    request_timeout_seconds: float = 60.0
    # BigQuery refuses, unbilled, any one query that would bill more (see README, Cost).
    max_bytes_billed: int = DEFAULT_MAX_BYTES_BILLED
    max_bytes_billed_by_source: Mapping[str, int] = field(default_factory=dict)

    def max_bytes_billed_for(self, source: str) -> int:
        """The cap on bytes billed by one query of this source."""
        return self.max_bytes_billed_by_source.get(source, self.max_bytes_billed)

    @property
    def is_external(self) -> bool:
        """True when a real project or an emulator is configured."""
        return bool(self.project or self.emulator_host)


@dataclass(frozen=True)
class CloudSettings:
    """What the Cloud Functions need beyond a sync: topics, budgets and secrets by name."""

    project: str | None = None
    trigger_topic: str = "sync-trigger"
    dead_letter_topic: str = "sync-dead-letter"
    time_budget_seconds: float = 480.0  # event functions stop at 540 s; leave room to commit
    # The platform's timeout (event functions: 540 s). Every BigQuery wait and retry is cut to
    # end FINISH_SECONDS before it, so the run is recorded and its continuation published.
    time_limit_seconds: float = 540.0
    max_event_age_seconds: float = 3600.0  # an older trigger is superseded by the next hourly one
    db_password_secret: str | None = None  # Secret Manager resource name
    slack_webhook_secret: str | None = None
    slack_webhook_url: str | None = field(default=None, repr=False)  # local and tests only

    def topic_path(self, topic: str) -> str:
        """A full topic path from a short name (or a path, returned as is)."""
        if topic.startswith("projects/"):
            return topic
        if not self.project:
            raise ConfigError(
                f"topic {topic!r} needs a project: set GONG_SYNC_PROJECT or use projects/P/topics/T"
            )
        return f"projects/{self.project}/topics/{topic}"


# The Pub/Sub emulator serves any project; this one when none is named (as `gcloud beta
# emulators pubsub env-init` names it with PUBSUB_PROJECT_ID).
EMULATOR_PROJECT = "gong-sync-local"


def _emulator_project(env: Mapping[str, str]) -> str | None:
    """The project to use on a Pub/Sub emulator, or None when there is no emulator."""
    if not env.get("PUBSUB_EMULATOR_HOST"):
        return None
    return env.get("PUBSUB_PROJECT_ID") or EMULATOR_PROJECT


@dataclass(frozen=True)
class QualitySettings:
    """When a run's input is mostly garbage: too large a share of its rows dead-lettered."""

    max_rejected_share: float = 0.05
    max_rejected_share_by_source: Mapping[str, float] = field(default_factory=dict)
    min_rows: int = 100  # fewer rows read: a handful of bad ones says little

    def max_share_for(self, source: str) -> float:
        """The share of dead-lettered rows over which a run of this source is degraded."""
        return self.max_rejected_share_by_source.get(source, self.max_rejected_share)


def _share(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails this too
        raise ConfigError(f"{name} must be a share between 0 and 1 (0.05 is 5%), got {raw!r}")
    return value


def _quality(env: Mapping[str, str]) -> QualitySettings:
    name = "GONG_SYNC_MAX_REJECTED_SHARE_BY_SOURCE"
    raw = env.get("GONG_SYNC_MAX_REJECTED_SHARE")
    return QualitySettings(
        max_rejected_share=_share("GONG_SYNC_MAX_REJECTED_SHARE", raw) if raw else 0.05,
        max_rejected_share_by_source=_pairs(env, name, "source=0.1", _share, _source_names),
        min_rows=_int(env, "GONG_SYNC_QUALITY_MIN_ROWS", 100),
    )


@dataclass(frozen=True)
class Settings:
    """Everything a sync run needs to know about its environment."""

    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    bigquery: BigQuerySettings = field(default_factory=BigQuerySettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    page_size: int = 5000
    pages_per_query: int = 200
    lookback: timedelta = timedelta(hours=1)
    local_dir: str = ".local"
    # A verify's value sample is drawn from the rows synced in these last days (0: all), which
    # a table clustered on its cursor prunes: the weekly sample, not every sentence ever.
    verify_sample_days: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment (see the README's configuration table)."""
        env = os.environ if env is None else env
        return cls(
            postgres=_postgres(env),
            bigquery=_bigquery(env),
            cloud=_cloud(env),
            quality=_quality(env),
            page_size=_int(env, "GONG_SYNC_PAGE_SIZE", 5000, minimum=1),
            pages_per_query=_int(env, "GONG_SYNC_PAGES_PER_QUERY", 200, minimum=1),
            lookback=timedelta(seconds=_int(env, "GONG_SYNC_LOOKBACK_SECONDS", 3600)),
            local_dir=env.get("GONG_SYNC_LOCAL_DIR") or ".local",
            verify_sample_days=_int(env, "GONG_SYNC_VERIFY_SAMPLE_DAYS", 8),
        )


def _postgres(env: Mapping[str, str]) -> PostgresSettings:
    return PostgresSettings(
        host=env.get("GONG_SYNC_DB_HOST") or None,
        port=_int(env, "GONG_SYNC_DB_PORT", 5432, minimum=1),
        database=env.get("GONG_SYNC_DB_NAME") or "gong_sync",
        user=env.get("GONG_SYNC_DB_USER") or "postgres",
        password=env.get("GONG_SYNC_DB_PASSWORD") or None,
        instance_connection_name=env.get("INSTANCE_CONNECTION_NAME") or None,
        ip_type=_choice(env, "GONG_SYNC_DB_IP_TYPE", ("PUBLIC", "PRIVATE"), "PUBLIC"),
        statement_timeout_seconds=(
            _float(env, "GONG_SYNC_DB_STATEMENT_TIMEOUT_SECONDS", 0.0) or None
        ),
    )


def _bigquery(env: Mapping[str, str]) -> BigQuerySettings:
    return BigQuerySettings(
        project=env.get("GONG_SYNC_BQ_PROJECT") or None,
        emulator_host=env.get("BIGQUERY_EMULATOR_HOST") or None,
        storage_emulator_host=env.get("BIGQUERY_STORAGE_EMULATOR_HOST") or None,
        read_api="rest"
        if _choice(env, "GONG_SYNC_BQ_READ_API", ("STORAGE", "REST"), "STORAGE") == "REST"
        else "storage",
        location=env.get("GONG_SYNC_BQ_LOCATION") or None,
        gong_dataset=env.get("GONG_SYNC_GONG_DATASET") or "gongio_ft",
        salesforce_dataset=env.get("GONG_SYNC_SALESFORCE_DATASET") or "salesforce",
        table_overrides=_pairs(
            env, "GONG_SYNC_TABLES", "logical=real", lambda _, t: t.strip(), _table_names
        ),
        retry_seconds=_float(env, "GONG_SYNC_BQ_RETRY_SECONDS", 120.0),
        request_timeout_seconds=_float(env, "GONG_SYNC_BQ_REQUEST_TIMEOUT_SECONDS", 60.0),
        max_bytes_billed=(
            parse_size("GONG_SYNC_MAX_BYTES_BILLED", env["GONG_SYNC_MAX_BYTES_BILLED"])
            if env.get("GONG_SYNC_MAX_BYTES_BILLED")
            else DEFAULT_MAX_BYTES_BILLED
        ),
        max_bytes_billed_by_source=_pairs(
            env, "GONG_SYNC_MAX_BYTES_BILLED_BY_SOURCE", "source=100GiB", parse_size, _source_names
        ),
    )


def _cloud(env: Mapping[str, str]) -> CloudSettings:
    return CloudSettings(
        project=(
            env.get("GONG_SYNC_PROJECT")
            or env.get("GOOGLE_CLOUD_PROJECT")
            or env.get("GONG_SYNC_BQ_PROJECT")
            or _emulator_project(env)
        ),
        trigger_topic=env.get("GONG_SYNC_TRIGGER_TOPIC") or "sync-trigger",
        dead_letter_topic=env.get("GONG_SYNC_DEAD_LETTER_TOPIC") or "sync-dead-letter",
        time_budget_seconds=_float(env, "GONG_SYNC_TIME_BUDGET_SECONDS", 480.0),
        time_limit_seconds=_float(env, "GONG_SYNC_TIME_LIMIT_SECONDS", 540.0),
        max_event_age_seconds=_int(env, "GONG_SYNC_MAX_EVENT_AGE_SECONDS", 3600, minimum=1),
        db_password_secret=env.get("GONG_SYNC_DB_PASSWORD_SECRET") or None,
        slack_webhook_secret=env.get("GONG_SYNC_SLACK_WEBHOOK_SECRET") or None,
        slack_webhook_url=env.get("GONG_SYNC_SLACK_WEBHOOK_URL") or None,
    )
