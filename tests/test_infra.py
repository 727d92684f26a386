"""Policy tests of the Pulumi program under pulumi.runtime.set_mocks; each breaks with its rule."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pulumi
import pytest

from gong_sync import sources, trigger
from gong_sync.declarations import Source
from gong_sync.local import fivetran_schemas
from gong_sync_infra.cloud_local.program import ProgramMocks, run_program
from gong_sync_infra.functions import MAX_DELIVERY_ATTEMPTS
from gong_sync_infra.stack import StackConfig

DB_PASSWORD = "sentinel-db-password-7c1"
SLACK_URL = "https://hooks.slack.example/services/sentinel-slack-7c1"
SOURCES = tuple(sources.SOURCES)


Mocks = ProgramMocks


def deploy(tmp_path: Path, sources: tuple[str, ...] = SOURCES, **config: Any) -> Mocks:
    """Run the program against mocks and wait for every resource to register."""
    return run_program(
        StackConfig(
            project="proj",
            sources=sources,
            archive_dir=tmp_path,
            slack_webhook_url=pulumi.Output.secret(SLACK_URL),
            **config,
        ),
        ProgramMocks("proj", password=DB_PASSWORD),
    )


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Mocks:
    return deploy(tmp_path_factory.mktemp("infra"))


SUB = "gcp:pubsub/subscription:Subscription"


def test_every_sync_subscription_dead_letters_after_its_attempts_with_backoff(
    mocks: Mocks,
) -> None:
    subs = {s.inputs["name"]: s.inputs for s in mocks.of(SUB)}
    for source in SOURCES:
        sub = subs[f"gong-sync-sync-{source}"]
        assert sub["topic"] == "projects/proj/topics/sync-trigger"
        assert sub["deadLetterPolicy"] == {
            "deadLetterTopic": "projects/proj/topics/sync-dead-letter",
            "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS,
        }
        assert 5 <= MAX_DELIVERY_ATTEMPTS <= 100  # what Pub/Sub accepts
        assert sub["retryPolicy"]["minimumBackoff"]
        assert sub["retryPolicy"]["maximumBackoff"]
        assert sub["pushConfig"]["oidcToken"]["serviceAccountEmail"].startswith("gs-pubsub-pusher")
    # The Pub/Sub service agent may publish dead letters and pull from each subscription.
    agent = "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
    dl_publishers = [t.inputs for t in mocks.of("gcp:pubsub/topicIAMMember:TopicIAMMember")
                     if t.inputs["member"] == agent]  # fmt: skip
    assert [(t["topic"], t["role"]) for t in dl_publishers] == [
        ("sync-dead-letter", "roles/pubsub.publisher")
    ]
    subscribers = mocks.of("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember")
    assert sorted(s.inputs["subscription"] for s in subscribers if s.inputs["member"] == agent) == [
        f"gong-sync-sync-{s}" for s in sorted(SOURCES)
    ]


def test_the_dead_letter_topic_has_a_subscription(mocks: Mocks) -> None:
    on_dlq = [s.inputs for s in mocks.of(SUB)
              if s.inputs["topic"] == "projects/proj/topics/sync-dead-letter"]  # fmt: skip
    assert {s["name"] for s in on_dlq} == {"sync-dead-letter-archive", "gong-sync-alert"}
    archive = next(s for s in on_dlq if s["name"] == "sync-dead-letter-archive")
    assert archive["messageRetentionDuration"] == "604800s"


def test_the_scheduler_publishes_hourly_syncs_and_a_daily_reconciliation(mocks: Mocks) -> None:
    jobs = {j.inputs["schedule"]: j.inputs["pubsubTarget"]
            for j in mocks.of("gcp:cloudscheduler/job:Job")}  # fmt: skip
    assert {s: json.loads(base64.b64decode(t["data"])) for s, t in jobs.items()} == {
        "0 * * * *": {"mode": "incremental"},
        "30 3 * * *": {"mode": "verify", "fix": True, "sample": 0},
        "30 4 * * 0": {"mode": "verify", "fix": True, "sample": 500},
    }
    assert {t["topicName"] for t in jobs.values()} == {"projects/proj/topics/sync-trigger"}
    for target in jobs.values():  # every message is one the functions accept
        trigger.parse(json.loads(base64.b64decode(target["data"])), list(SOURCES))


def test_no_public_iam_anywhere(mocks: Mocks) -> None:
    for resource in mocks.resources:
        text = json.dumps(resource.inputs, default=str)
        assert "allUsers" not in text, resource.name
        assert "allAuthenticatedUsers" not in text, resource.name


def _roles_by_member(mocks: Mocks) -> dict[str, set[tuple[str, str]]]:
    roles: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for typ, scope in [
        ("gcp:projects/iAMMember:IAMMember", "project"),
        ("gcp:bigquery/datasetIamMember:DatasetIamMember", "datasetId"),
        ("gcp:secretmanager/secretIamMember:SecretIamMember", "secretId"),
        ("gcp:pubsub/topicIAMMember:TopicIAMMember", "topic"),
        ("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember", "subscription"),
        ("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "name"),
    ]:
        for r in mocks.of(typ):
            roles[r.inputs["member"]].add((r.inputs["role"], str(r.inputs[scope])))
    return roles


def _datasets_read(name: str) -> set[str]:
    """The datasets holding a table that a source's declarations (or fallback) name."""
    dataset_of = {fivetran_schemas.GONG: "gongio_ft", fivetran_schemas.SALESFORCE: "salesforce"}
    source: Source | None = sources.get(name)
    tables: set[str] = set()
    while source is not None:
        texts = [t.from_sql for t in source.targets]
        texts += [c.sql or "" for t in source.targets for c in (*t.columns, *t.inputs)]
        texts += [t.lookup_sql or "" for s in source.streams for t in s.touches]
        tables |= {s.table for s in source.streams}
        tables |= {found for text in texts for found in re.findall(r"\{(\w+)\}", text)}
        source = source.fallback
    return {dataset_of[fivetran_schemas.TABLES[table][0]] for table in tables}


def test_each_function_has_its_own_account_with_only_the_listed_roles(mocks: Mocks) -> None:
    functions = mocks.of("gcp:cloudfunctionsv2/function:Function")
    accounts = [f.inputs["serviceConfig"]["serviceAccountEmail"] for f in functions]
    assert len(accounts) == len(set(accounts)) == len(SOURCES) + 1
    roles = _roles_by_member(mocks)
    for source in SOURCES:
        member = f"serviceAccount:gs-sync-{source}@proj.iam.gserviceaccount.com"
        # dataViewer only on the datasets the source's declarations (and fallback) read.
        read = _datasets_read(source)
        assert roles[member] == {
            ("roles/bigquery.jobUser", "proj"),
            ("roles/bigquery.readSessionUser", "proj"),  # the Storage Read API
            ("roles/cloudsql.client", "proj"),
            *(("roles/bigquery.dataViewer", dataset) for dataset in read),
            ("roles/secretmanager.secretAccessor", "projects/proj/secrets/gong-sync-db-password"),
            ("roles/pubsub.publisher", "sync-dead-letter"),
            ("roles/pubsub.publisher", "sync-trigger"),
        }
    assert roles["serviceAccount:gs-alert@proj.iam.gserviceaccount.com"] == {
        ("roles/secretmanager.secretAccessor", "projects/proj/secrets/gong-sync-slack-webhook"),
    }
    for f in functions:
        assert f.inputs["buildConfig"]["runtime"] == "python312"


def test_no_secret_value_is_in_a_plain_environment_variable(mocks: Mocks) -> None:
    functions = mocks.of("gcp:cloudfunctionsv2/function:Function")
    for f in functions:
        text = json.dumps(f.inputs, default=str)
        assert DB_PASSWORD not in text
        assert "sentinel-slack" not in text
    env = next(f for f in functions if f.name == "sync-calls").inputs["serviceConfig"][
        "environmentVariables"
    ]
    assert env["GONG_SYNC_DB_PASSWORD_SECRET"] == (
        "projects/proj/secrets/gong-sync-db-password/versions/latest"
    )
    # The values live only in Secret Manager versions (and the SQL user it configures).
    holders = {r.type for r in mocks.resources
               if DB_PASSWORD in json.dumps(r.inputs, default=str)}  # fmt: skip
    assert holders <= {"gcp:secretmanager/secretVersion:SecretVersion", "gcp:sql/user:User"}


def test_adding_a_source_adds_one_function_one_subscription_one_account(
    tmp_path: Path, mocks: Mocks
) -> None:
    fewer = deploy(tmp_path, SOURCES[:-1])
    count = Counter(r.type for r in mocks.resources)
    count.subtract(Counter(r.type for r in fewer.resources))
    added = {t: n for t, n in count.items() if n}
    assert added["gcp:cloudfunctionsv2/function:Function"] == 1
    assert added[SUB] == 1
    assert added["gcp:serviceaccount/account:Account"] == 1


def test_the_source_archive_serves_every_entrypoint_from_a_clean_directory(
    tmp_path: Path,
) -> None:
    """Unzipped alone, the archive imports gong_sync from itself and answers every function."""
    import subprocess
    import zipfile

    from gong_sync_infra import source_archive

    first = source_archive.build(tmp_path / "a")
    again = source_archive.build(tmp_path / "b")
    assert first.name == again.name  # named by content: unchanged code, same object
    names = zipfile.ZipFile(first).namelist()
    assert {"main.py", "requirements.txt", "gong_sync/engine.py"} <= set(names)
    assert "gong_sync/migrations/0001_initial.sql" in names
    assert not [n for n in names if n.startswith("gong_sync/local/") or "__pycache__" in n]
    clean = tmp_path / "clean"
    zipfile.ZipFile(first).extractall(clean)
    probe = f"""
import base64, json, sys
sys.path.insert(0, {str(clean)!r})
import functions_framework, gong_sync
assert gong_sync.__file__.startswith({str(clean)!r}), gong_sync.__file__
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
for target, other in [("sync_calls", "emails"), ("sync_emails", "calls"),
                      ("sync_opportunities", "calls"), ("alert", None)]:
    app = functions_framework.create_app(target, {str(clean / "main.py")!r}, "cloudevent")
    body = {{"sources": [other]}} if other else {{}}
    attrs = {{}} if other else {{"kind": "bad_record", "batch_index": "1"}}
    event = CloudEvent({{"type": "google.cloud.pubsub.topic.v1.messagePublished",
                        "source": "//pubsub.googleapis.com/"}},
                       {{"message": {{"data": base64.b64encode(json.dumps(body).encode()).decode(),
                                     "attributes": attrs}}}})
    headers, data = to_structured(event)
    response = app.test_client().post("/", headers=headers, data=data)
    assert response.status_code == 200, (target, response.status_code, response.data)
    print(target, "ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=clean, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "GONG_SYNC_PROJECT": "proj"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        "sync_calls", "ok", "sync_emails", "ok", "sync_opportunities", "ok", "alert", "ok"
    ]  # fmt: skip


@pytest.mark.parametrize(("network", "ipv4"), [(None, True), ("", True), ("projects/p/x", False)])
def test_an_empty_private_network_means_a_public_ip_never_no_ip(
    tmp_path: Path, network: str | None, ipv4: bool
) -> None:
    """Pulumi.yaml defaults sqlPrivateNetwork to "" (a key with no default is required)."""
    mocks = deploy(tmp_path, sql_private_network=network, sql_subnetwork=network and "sub")
    (instance,) = mocks.of("gcp:sql/databaseInstance:DatabaseInstance")
    ip = instance.inputs["settings"]["ipConfiguration"]
    assert ip["ipv4Enabled"] is ipv4
    assert ip.get("privateNetwork") == (network or None)
    for f in mocks.of("gcp:cloudfunctionsv2/function:Function"):
        if f.name == "alert":
            continue  # it never reaches the database
        egress = f.inputs["serviceConfig"].get("directVpcNetworkInterfaces")
        want = [{"network": network, "subnetwork": "sub"}] if network else None
        assert egress == want


def subscription_filters(mocks: Mocks) -> dict[str, str | None]:
    """Subscription name -> the filter the program gives it."""
    return {s.inputs["name"]: s.inputs.get("filter") for s in mocks.of(SUB)}


def test_each_source_subscription_filters_to_its_own_and_shared_messages(mocks: Mocks) -> None:
    filters = subscription_filters(mocks)
    for source in SOURCES:
        assert filters[f"gong-sync-sync-{source}"] == trigger.subscription_filter(source)
    assert filters["gong-sync-alert"] is None  # every dead letter reaches the alert
    functions = mocks.of("gcp:cloudfunctionsv2/function:Function")
    sync = [f for f in functions if f.name.startswith("sync-")]
    # More than one instance: a second request waits on the source's lock, never on a 429.
    assert {f.inputs["serviceConfig"]["maxInstanceCount"] for f in sync} == {5}


def test_a_first_deploy_on_a_new_project_has_what_google_documents(mocks: Mocks) -> None:
    builder = "projects/proj/serviceAccounts/gs-function-builder@proj.iam.gserviceaccount.com"
    functions = mocks.of("gcp:cloudfunctionsv2/function:Function")
    for f in functions:  # built as an account of our own, not the default Cloud Build one
        assert f.inputs["buildConfig"]["serviceAccount"] == builder
        assert "environmentVariables" not in f.inputs["buildConfig"]  # no signature-type env
    member = "serviceAccount:gs-function-builder@proj.iam.gserviceaccount.com"
    project_roles = {r.inputs["role"] for r in mocks.of("gcp:projects/iAMMember:IAMMember")
                     if r.inputs["member"] == member}  # fmt: skip
    assert project_roles == {"roles/logging.logWriter", "roles/artifactregistry.writer"}
    (source_read,) = mocks.of("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (source_read.inputs["role"], source_read.inputs["member"]) == (
        "roles/storage.objectViewer", member,
    )  # fmt: skip
    # The Pub/Sub service agent is created before anything names it, and may mint push tokens.
    (identity,) = mocks.of("gcp:projects/serviceIdentity:ServiceIdentity")
    assert identity.inputs["service"] == "pubsub.googleapis.com"
    (token,) = mocks.of("gcp:serviceaccount/iAMMember:IAMMember")
    assert token.inputs["role"] == "roles/iam.serviceAccountTokenCreator"
    assert token.inputs["member"].startswith("serviceAccount:service-123456789@gcp-sa-pubsub")
    apis = {s.inputs["service"] for s in mocks.of("gcp:projects/service:Service")}
    assert "cloudresourcemanager.googleapis.com" in apis
    assert "eventarc.googleapis.com" not in apis  # push subscriptions, not Eventarc
    (user,) = mocks.of("gcp:sql/user:User")
    assert user.inputs["deletionPolicy"] == "ABANDON"
    (instance,) = mocks.of("gcp:sql/databaseInstance:DatabaseInstance")
    assert instance.inputs["databaseVersion"] == "POSTGRES_18"  # what the tests run
    assert "databaseFlags" not in instance.inputs["settings"]  # password auth: no IAM flag


def test_the_dead_letter_alert_watches_forwarded_triggers_and_published_records(
    mocks: Mocks,
) -> None:
    policies = {p.name: p.inputs for p in mocks.of("gcp:monitoring/alertPolicy:AlertPolicy")}
    filters = [c["conditionThreshold"]["filter"]
               for c in policies["gong-sync-dead-letters"]["conditions"]]  # fmt: skip
    assert any("topic/send_message_operation_count" in f for f in filters)
    assert any("subscription/dead_letter_message_count" in f for f in filters)


def test_the_functions_install_exactly_the_tested_set(tmp_path: Path) -> None:
    """The archive's requirements.txt pins every package, at the version the tests ran."""
    import zipfile

    from gong_sync_infra import runtime_lock, source_archive

    committed = runtime_lock.LOCK.read_text()
    assert committed == runtime_lock.lock_text(), "stale: run `make lock`"
    locked = runtime_lock.pins(runtime_lock.LOCK)
    assert runtime_lock.pins(runtime_lock.ROOT / "requirements.txt").items() <= locked.items()
    assert {"grpcio", "protobuf", "flask", "google-api-core"} <= locked.keys()  # transitive
    with zipfile.ZipFile(source_archive.build(tmp_path)) as archive:
        assert archive.read("requirements.txt").decode() == committed


def test_a_distribution_metric_is_charted_as_a_distribution(mocks: Mocks) -> None:
    """Bars of a summed distribution count runs, not rows: heatmaps or percentiles only."""
    kinds = {f"logging.googleapis.com/user/{m.inputs['name']}": m.inputs["metricDescriptor"]
             for m in mocks.of("gcp:logging/metric:Metric")}  # fmt: skip
    (dashboard,) = mocks.of("gcp:monitoring/dashboard:Dashboard")
    tiles = json.loads(dashboard.inputs["dashboardJson"])["mosaicLayout"]["tiles"]
    charted = 0
    for tile in tiles:
        for data in tile["widget"]["xyChart"]["dataSets"]:
            query = data["timeSeriesQuery"]["timeSeriesFilter"]
            metric = query["filter"].split('"')[1]
            if kinds.get(metric, {}).get("valueType") != "DISTRIBUTION":
                continue
            charted += 1
            aligner = query["aggregation"]["perSeriesAligner"]
            assert data["plotType"] == "HEATMAP" or aligner.startswith(
                ("ALIGN_PERCENTILE", "ALIGN_MEAN")
            ), tile["widget"]["title"]
    # Every distribution metric is on the dashboard (rows synced, bytes billed).
    assert charted == sum(k["valueType"] == "DISTRIBUTION" for k in kinds.values()) == 2
