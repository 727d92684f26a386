"""The deployed topology on this machine: the program's functions, topics and subscriptions.

Everything platform-shaped comes from the Pulumi program (program.py). The only changes are
the services that cannot run here, each replaced by a local stand-in at the same seam:
- Cloud SQL: INSTANCE_CONNECTION_NAME gives way to a local Postgres host (the connector's
  handshake needs Google). The program's user and database are created as Cloud SQL creates
  them: a member of `cloudsqlsuperuser`, which is not a superuser ("About PostgreSQL users
  and roles" in Cloud SQL's docs), so a migration that needs SUPERUSER fails here too.
- BigQuery: the emulator, under the project and datasets the program names.
- Pub/Sub: Google's emulator, with a push gateway applying what it ignores (filters).
- Secret Manager: a stand-in serving the program's secret ids (the DB password, the webhook).
- Slack: a stand-in recording each post.
- Cloud Run: cloud_run.py (instances, instance limit, timeout).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from google.cloud import bigquery, pubsub_v1

from gong_sync.bigquery_reader import make_client
from gong_sync.local.http_server import BackgroundHTTPServer
from gong_sync.local.pubsub_emulator import PubSubEmulator
from gong_sync.local.secret_manager_standin import SecretManagerStandIn
from gong_sync.local.slack_standin import SlackStandIn
from gong_sync.postgres_writer import ident
from gong_sync.settings import BigQuerySettings, PostgresSettings
from gong_sync_infra import platform
from gong_sync_infra.cloud_local import log_entries, program, pubsub_filter, workspace
from gong_sync_infra.cloud_local.cloud_run import PENDING_SECONDS, CloudRunService, Code, Served
from gong_sync_infra.stack import StackConfig

log = logging.getLogger(__name__)

Seeder = Callable[[bigquery.Client, dict[str, str]], None]


def seed_demo(client: bigquery.Client, datasets: dict[str, str]) -> None:
    """The demo dataset `make run` syncs."""
    from gong_sync.local import demo_data

    demo_data.seed_bigquery(client, client.project, datasets, demo_data.generate(1))


@dataclass
class HarnessOptions:
    """What a run of the harness may choose; the platform's settings are not among them."""

    root: Path = field(default_factory=lambda: Path(".local/cloud-local"))
    # Virtualenvs, keyed by lock and runtime: shared by every root, so a rerun installs nothing.
    venvs: Path = field(default_factory=lambda: Path(".local/cloud-local/venvs"))
    project: str = "gong-sync-local"
    # Knobs of our own code on every function (a test's page size or time budget), applied
    # over the program's variables and logged, never a platform setting.
    overrides: Mapping[str, str] = field(default_factory=dict)
    # The same, for one function by name (over `overrides`): a knob one source's test needs.
    function_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pending_seconds: float = PENDING_SECONDS
    seed: Seeder = seed_demo


@dataclass(frozen=True)
class Filtered:
    """A message the subscription's filter kept from its function (Pub/Sub acks it)."""

    subscription: str
    attributes: dict[str, str]


class PushGateway(BackgroundHTTPServer):
    """Pub/Sub's push path: the subscription's filter, then the function's Cloud Run front.

    The emulator ignores a subscription's filter (seen with Google Cloud SDK 528), so the
    gateway applies it: a message that does not match is acked and never reaches the function,
    as Pub/Sub does ("Filter messages from a subscription").
    """

    def __init__(self, routes: dict[str, tuple[program.Subscription, CloudRunService]]) -> None:
        """Route POST /<subscription name> to its function."""
        self.routes = routes
        self.filtered: list[Filtered] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = owner.routes.get(self.path.strip("/"))
                if route is None:
                    self._reply(404, b"no such subscription")
                    return
                subscription, service = route
                message = _message(body)
                attributes = {str(k): str(v) for k, v in
                              (message.get("attributes") or {}).items()}  # fmt: skip
                rule = subscription.filter
                if rule is not None and not pubsub_filter.matches(rule, attributes):
                    owner.filtered.append(Filtered(subscription.name, attributes))
                    self._reply(204, b"")
                    return
                status, reply = service.handle(
                    "/", body, dict(self.headers.items()), str(message.get("messageId") or "")
                )
                self._reply(status, reply)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """The services record what they served."""

        super().__init__(Handler)
        # The emulator drops idle push connections; that is no error of the gateway's.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]


def _message(body: bytes) -> dict[str, Any]:
    """The message of a push body (wrapped JSON); empty when it is not one."""
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return {}
    return message if isinstance(message, dict) else {}


def _cloud_sql_like(settings: PostgresSettings, user: str, password: str) -> None:
    """The program's user as Cloud SQL makes it: in cloudsqlsuperuser, never a superuser.

    "All users you create using Cloud SQL are created as part of the cloudsqlsuperuser role,
    and have the same set of attributes as the postgres user: CREATEROLE, CREATEDB, and
    LOGIN" (Cloud SQL, "About PostgreSQL users and roles").
    """
    import pg8000.dbapi

    conn = pg8000.dbapi.connect(
        host=settings.host, port=settings.port, user=settings.user, database="postgres"
    )
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname IN ('cloudsqlsuperuser', %s)", (user,))
    have = {row[0] for row in cur.fetchall()}
    if "cloudsqlsuperuser" not in have:
        cur.execute("CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEROLE CREATEDB")
    if user not in have:
        cur.execute(f"CREATE ROLE {ident(user)} IN ROLE cloudsqlsuperuser")
    # Generated, quote-free password; the attributes also on a role an older harness made.
    cur.execute(f"ALTER ROLE {ident(user)} LOGIN CREATEROLE CREATEDB PASSWORD '{password}'")
    cur.execute(f"ALTER DATABASE {ident(settings.database)} OWNER TO cloudsqlsuperuser")
    conn.close()


class CloudLocal:
    """Start with `with CloudLocal(options) as cloud:`; every service stops on exit."""

    def __init__(self, options: HarnessOptions | None = None) -> None:
        """Read the program; nothing starts before __enter__."""
        self.options = options or HarnessOptions()
        self.root = self.options.root.resolve()
        self.topology = program.read(
            StackConfig(project=self.options.project, archive_dir=self.root / "build")
        )
        self.services: dict[str, CloudRunService] = {}
        self._tail = LogTail(self.services)
        self._entries: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()

    # -- start-up ---------------------------------------------------------------------------

    def __enter__(self) -> CloudLocal:
        """Start every stand-in, then the functions' services and the subscriptions."""
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop everything, the functions first."""
        self._stack.close()

    def _sync_env(self) -> dict[str, str]:
        (env,) = {json.dumps(f.env, sort_keys=True) for f in self.sync_functions}
        return dict(json.loads(env))

    @property
    def sync_functions(self) -> list[program.Function]:
        """The functions that sync a source (they read Postgres and BigQuery)."""
        return [f for f in self.topology.functions.values() if "GONG_SYNC_DB_NAME" in f.env]

    def _start(self) -> None:
        (runtime,) = {f.runtime for f in self.topology.functions.values()}  # one archive
        code = workspace.unpack(self.topology.archive, self.root / "workspace")
        venv = workspace.virtualenv(code, runtime, self.options.venvs.resolve())
        logs = self.root / "logs"
        for old in logs.glob("*.log"):
            old.unlink()
        sync_env = self._sync_env()
        self.postgres = self._postgres(sync_env)
        stand_ins = {**self._bigquery(sync_env), **self._google()}
        base = {"PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": str(self.root / "home")}  # fmt: skip
        unknown = set(self.options.function_overrides) - set(self.topology.functions)
        if unknown:
            raise ValueError(f"overrides name no function of the program: {sorted(unknown)}")
        for function in self.topology.functions.values():
            mine = self.options.function_overrides.get(function.name, {})
            env = {**base, **function.env, **stand_ins, **self.options.overrides, **mine}
            if env.pop("INSTANCE_CONNECTION_NAME", None) is not None:
                env["GONG_SYNC_DB_HOST"] = str(self.postgres.host)
                env["GONG_SYNC_DB_PORT"] = str(self.postgres.port)
            service = CloudRunService(
                function, env, Code(code, venv, logs), self.options.pending_seconds
            )
            self.services[function.name] = service
            self._stack.callback(service.stop)
        if self.options.overrides:
            log.info("overrides on every function: %s", dict(self.options.overrides))
        for name, mine in self.options.function_overrides.items():
            log.info("overrides on %s: %s", name, dict(mine))
        self.gateway = self._stack.enter_context(
            PushGateway({s.name: (s, self.services[s.push_to])
                         for s in self.topology.subscriptions if s.push_to})
        )  # fmt: skip
        self._messaging()

    def _google(self) -> dict[str, str]:
        """Pub/Sub's emulator, and the Secret Manager and Slack stand-ins: their variables."""
        pubsub = PubSubEmulator(self.root / "pubsub")
        self.pubsub_host = pubsub.start()  # host:port, also in this process's environment
        self._stack.callback(pubsub.stop)
        self.slack = SlackStandIn()
        self._stack.callback(self.slack.stop)
        by_id = {
            "gong-sync-db-password": self._db_password,
            "gong-sync-slack-webhook": self.slack.url,
        }
        missing = set(self.topology.secrets) - set(by_id)
        if missing:
            raise RuntimeError(f"no local value for the program's secrets {sorted(missing)}")
        secret_manager = self._stack.enter_context(SecretManagerStandIn(by_id))
        return {
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "GONG_SYNC_SECRET_MANAGER_ENDPOINT": secret_manager.url,
        }

    def _postgres(self, env: Mapping[str, str]) -> PostgresSettings:
        from gong_sync.local.postgres_server import LocalPostgres

        server = LocalPostgres(self.root / "postgres", env["GONG_SYNC_DB_NAME"])
        settings = server.start()
        self._stack.callback(server.stop)
        self._db_password = secrets.token_hex(16)
        _cloud_sql_like(settings, env["GONG_SYNC_DB_USER"], self._db_password)
        return settings

    def _bigquery(self, env: Mapping[str, str]) -> dict[str, str]:
        """The emulator, seeded once; the functions' environment that points at it."""
        from gong_sync.local.bigquery_emulator import LocalBigQuery

        emulator = LocalBigQuery(self.root / "bigquery", project=env["GONG_SYNC_BQ_PROJECT"])
        host = emulator.start()
        self._stack.callback(emulator.stop)
        self.bigquery = make_client(BigQuerySettings(project=emulator.project, emulator_host=host))
        self.storage_host = emulator.grpc_host or ""  # its Storage Read API
        self.datasets = {
            "gong": env["GONG_SYNC_GONG_DATASET"],
            "salesforce": env["GONG_SYNC_SALESFORCE_DATASET"],
        }
        existing = {d.dataset_id for d in self.bigquery.list_datasets()}
        if self.datasets["gong"] not in existing:
            self.options.seed(self.bigquery, self.datasets)
        return {
            "BIGQUERY_EMULATOR_HOST": host,
            "BIGQUERY_STORAGE_EMULATOR_HOST": self.storage_host,
        }

    def _messaging(self) -> None:
        """The program's topics and subscriptions, push endpoints at the gateway."""
        project = self.topology.project
        with pubsub_v1.PublisherClient() as publisher:
            for topic in self.topology.topics:
                publisher.create_topic(request={"name": self.topic_path(topic)}, timeout=30)
        with pubsub_v1.SubscriberClient() as subscriber:
            for sub in self.topology.subscriptions:
                request: dict[str, Any] = {
                    "name": f"projects/{project}/subscriptions/{sub.name}",
                    "topic": self.topic_path(sub.topic),
                    "ack_deadline_seconds": sub.ack_deadline_seconds,
                }
                if sub.push_to:
                    request["push_config"] = {"push_endpoint": f"{self.gateway.url}/{sub.name}"}
                if sub.minimum_backoff_seconds is not None:
                    request["retry_policy"] = {
                        "minimum_backoff": _duration(sub.minimum_backoff_seconds),
                        "maximum_backoff": _duration(sub.maximum_backoff_seconds or 600),
                    }
                if sub.dead_letter_topic:
                    request["dead_letter_policy"] = {
                        "dead_letter_topic": self.topic_path(sub.dead_letter_topic),
                        "max_delivery_attempts": sub.max_delivery_attempts,
                    }
                if sub.filter:
                    request["filter"] = sub.filter  # kept, though the emulator ignores it
                subscriber.create_subscription(request=request, timeout=30)

    # -- using it ---------------------------------------------------------------------------

    def topic_path(self, topic: str) -> str:
        """A topic's full path in the program's project."""
        return f"projects/{self.topology.project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publish one message as any client would; return its id."""
        with pubsub_v1.PublisherClient() as publisher:
            future = publisher.publish(self.topic_path(topic), data, **attributes)
            return str(future.result(timeout=30))

    def tick(self, cron: str = platform.HOURLY) -> list[str]:
        """What Cloud Scheduler does when the jobs of this schedule fire: publish each payload."""
        jobs = [job for job in self.topology.schedules if job.schedule == cron]
        if not jobs:
            raise ValueError(f"no job of the program runs on {cron!r}")
        return [self.publish(job.topic, job.data, **job.attributes) for job in jobs]

    @property
    def served(self) -> list[Served]:
        """Every request any function's service answered, in order of arrival."""
        return sorted((r for s in self.services.values() for r in s.served),
                      key=lambda r: r.started)  # fmt: skip

    def idle(self, seconds: float) -> bool:
        """Something ran, nothing is in flight, and nothing was answered for `seconds`."""
        served = self.served
        if not served or any(s.in_flight for s in self.services.values()):
            return False
        return time.time() - max(s.ended for s in served) > seconds

    def entries(self) -> list[dict[str, Any]]:
        """Cloud Logging's entries for the JSON lines every instance wrote, so far."""
        for service, line in self._tail.new_lines():
            if line.startswith("{"):
                entry = log_entries.entry(line)
                entry["resource"]["labels"] = {"service_name": service}
                self._entries.append(entry)
        return list(self._entries)


class LogTail:
    """The whole lines the instances wrote since the last call; each file is read once."""

    def __init__(self, services: Mapping[str, CloudRunService]) -> None:
        """Follow every instance log of these services, from its start."""
        self.services = services
        self.offsets: dict[Path, int] = {}

    def new_lines(self) -> list[tuple[str, str]]:
        """(service name, line) for every line completed since the last call."""
        out: list[tuple[str, str]] = []
        for service in self.services.values():
            for path in service.log_paths:
                with path.open("rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    chunk = f.read()
                done = chunk.rfind(b"\n") + 1  # a line still being written waits a call
                self.offsets[path] = self.offsets.get(path, 0) + done
                text = chunk[:done].decode(errors="replace")
                out += [(service.function.name, line) for line in text.splitlines()]
        return out


def _duration(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)
