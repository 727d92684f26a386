"""The whole system of DESIGN §1, from one typed configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from gong_sync import sources as source_registry
from gong_sync import trigger
from gong_sync.declarations import Source
from gong_sync_infra import source_archive
from gong_sync_infra.database import Database, DatabaseArgs
from gong_sync_infra.functions import Deployment, FunctionArgs, SourceFunction
from gong_sync_infra.observability import Observability, ObservabilityArgs
from gong_sync_infra.platform import (
    SCHEDULES,
    Apis,
    ApisArgs,
    Messaging,
    MessagingArgs,
    ScheduledTrigger,
    SchedulerArgs,
    SecretArgs,
    StoredSecret,
)

# Cloud Run answers 429 once every instance is busy (after about 30 s), and each 429 spends
# one of the trigger's delivery attempts: one instance per source was not enough for an
# hourly trigger beside a running continuation.
SYNC_INSTANCES = 5


@dataclass
class StackConfig:
    """Everything `pulumi config` can set (documented in Pulumi.yaml)."""

    project: str
    region: str = "europe-west1"
    sources: tuple[str, ...] = tuple(source_registry.SOURCES)
    gong_dataset: str = "gongio_ft"
    salesforce_dataset: str = "salesforce"
    bigquery_project: str | None = None
    sql_tier: str = "db-custom-1-3840"
    sql_private_network: str | None = None
    sql_subnetwork: str | None = None  # Direct VPC egress subnetwork for private IP
    sql_version: str = "POSTGRES_18"
    production: bool = False
    slack_webhook_url: pulumi.Input[str] = ""
    alert_email: str | None = None
    archive_dir: Path = field(default_factory=lambda: Path(".build"))

    @property
    def query_project(self) -> str:
        """Where the functions run query jobs: the BigQuery project, else the stack's own."""
        return self.bigquery_project or self.project


@dataclass
class Stack:
    """The resources tests and outputs look at."""

    messaging: Messaging
    database: Database
    functions: dict[str, SourceFunction]
    alert: SourceFunction
    schedules: tuple[ScheduledTrigger, ...]  # hourly sync, daily keys, weekly values


# What Cloud Build needs to build a function as a custom account (Google's "Custom service
# account for Cloud Build"): write logs, push the image, read the source archive.
BUILDER_ROLES = ("roles/logging.logWriter", "roles/artifactregistry.writer")


def function_builder(
    project: str, source_bucket: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> tuple[gcp.serviceaccount.Account, list[pulumi.Resource]]:
    """The account Cloud Build builds the functions as, and its grants (Google's list)."""
    account = gcp.serviceaccount.Account(
        "function-builder", account_id="gs-function-builder",
        display_name="gong-sync function builds", opts=opts,
    )  # fmt: skip
    member = pulumi.Output.concat("serviceAccount:", account.email)
    grants: list[pulumi.Resource] = [
        gcp.projects.IAMMember(f"function-builder-{role.split('.')[-1]}", project=project,
                               role=role, member=member)
        for role in BUILDER_ROLES
    ]  # fmt: skip
    grants.append(gcp.storage.BucketIAMMember(
        "function-builder-source", bucket=source_bucket, role="roles/storage.objectViewer",
        member=member,
    ))  # fmt: skip
    return account, grants


def dataset_roles(name: str) -> list[str]:
    """The dataset roles (gong, salesforce) a source's declarations read, fallback included."""
    source: Source | None = source_registry.get(name)
    roles: set[str] = set()
    while source is not None:
        roles |= set(source.datasets.values())
        source = source.fallback
    return sorted(roles)


def _sync_env(
    config: StackConfig, messaging: Messaging, database: Database
) -> dict[str, pulumi.Input[str]]:
    """The environment of every sync function (see the README's configuration table)."""
    return {
        "GONG_SYNC_PROJECT": config.project,
        "GONG_SYNC_BQ_PROJECT": config.query_project,
        "GONG_SYNC_GONG_DATASET": config.gong_dataset,
        "GONG_SYNC_SALESFORCE_DATASET": config.salesforce_dataset,
        "GONG_SYNC_TRIGGER_TOPIC": messaging.trigger.name,
        "GONG_SYNC_DEAD_LETTER_TOPIC": messaging.dead_letter.name,
        "INSTANCE_CONNECTION_NAME": database.connection_name,
        "GONG_SYNC_DB_NAME": "gong_sync",
        "GONG_SYNC_DB_USER": "gong_sync",
        # A resource name, not the password: the code reads the value from Secret Manager.
        "GONG_SYNC_DB_PASSWORD_SECRET": database.password.resource_name,
        "GONG_SYNC_DB_IP_TYPE": "PRIVATE" if config.sql_private_network else "PUBLIC",
        # No statement may hold a run past the function's 540 s (a page's write takes ~1 s).
        "GONG_SYNC_DB_STATEMENT_TIMEOUT_SECONDS": "120",
    }


def _sync_functions(
    config: StackConfig,
    messaging: Messaging,
    database: Database,
    env: dict[str, pulumi.Input[str]],
    deployment: Deployment,
    opts: pulumi.ResourceOptions,
) -> dict[str, SourceFunction]:
    """One function per configured source, each with only the grants its declarations need."""
    dataset_of = {"gong": config.gong_dataset, "salesforce": config.salesforce_dataset}
    return {
        source: SourceFunction(
            f"sync-{source}",
            FunctionArgs(
                entry_point=f"sync_{source}",
                topic_id=messaging.trigger.id,
                env=env,
                secrets=[database.password.secret.id],
                # Query jobs run, and read sessions open, in the project the client is bound
                # to; readSessionUser lets it read results over the Storage Read API.
                project_roles=[
                    ("roles/bigquery.jobUser", config.query_project),
                    ("roles/bigquery.readSessionUser", config.query_project),
                    ("roles/cloudsql.client", config.project),
                ],
                private_network=config.sql_private_network,
                private_subnetwork=config.sql_subnetwork,
                # Only the datasets its declarations (and their fallback) read.
                datasets=[
                    (config.query_project, dataset_of[role]) for role in dataset_roles(source)
                ],
                # Dead letters, and continuation messages for its own source.
                publish_to=[messaging.dead_letter.name, messaging.trigger.name],
                labels={"source": source},
                deployment=deployment,
                dead_letter_topic=messaging.dead_letter.id,
                message_filter=trigger.subscription_filter(source),
                # Concurrency stays 1 an instance; the source's advisory lock serialises runs,
                # so a second instance answers a busy source at once instead of a 429.
                max_instances=SYNC_INSTANCES,
            ),
            opts=opts,
        )
        for source in config.sources
    }


def _function_source(
    config: StackConfig, opts: pulumi.ResourceOptions
) -> tuple[gcp.storage.Bucket, gcp.storage.BucketObject]:
    """The private bucket the functions' source archive is uploaded to, and the upload."""
    bucket = gcp.storage.Bucket(
        "gong-sync-source",
        location=config.region,
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        opts=opts,
    )
    archive = source_archive.build(config.archive_dir)
    source_object = gcp.storage.BucketObject(
        "function-source",
        name=archive.name,  # named by content hash: unchanged code does not redeploy
        bucket=bucket.name,
        source=pulumi.FileAsset(str(archive)),
    )
    return bucket, source_object


def _alert_channels(config: StackConfig) -> list[pulumi.Output[str]]:
    """Where Cloud Monitoring sends the alert policies' incidents."""
    channels = []
    if config.alert_email:
        channels.append(
            gcp.monitoring.NotificationChannel(
                "alert-email", type="email", labels={"email_address": config.alert_email}
            ).id
        )
    return channels


def _push_invoker(messaging: Messaging, opts: pulumi.ResourceOptions) -> gcp.serviceaccount.Account:
    """The account Pub/Sub pushes as: the only one allowed to invoke the functions."""
    pusher = gcp.serviceaccount.Account(
        "pubsub-pusher", account_id="gs-pubsub-pusher", display_name="gong-sync Pub/Sub push",
        opts=opts,
    )  # fmt: skip
    # Pub/Sub mints the push OIDC token as this account; older projects need the grant.
    gcp.serviceaccount.IAMMember(
        "pubsub-pusher-token-creator", service_account_id=pusher.name,
        role="roles/iam.serviceAccountTokenCreator", member=messaging.pubsub_agent,
    )  # fmt: skip
    return pusher


def _alert_function(
    config: StackConfig,
    messaging: Messaging,
    deployment: Deployment,
    after_apis: pulumi.ResourceOptions,
    after_builder: pulumi.ResourceOptions,
) -> SourceFunction:
    """The function on the dead-letter topic, with the Slack webhook as its only secret."""
    slack = StoredSecret(
        "slack-webhook", SecretArgs("gong-sync-slack-webhook", config.slack_webhook_url),
        opts=after_apis,
    )  # fmt: skip
    return SourceFunction(
        "alert",
        FunctionArgs(
            entry_point="alert",
            topic_id=messaging.dead_letter.id,
            env={"GONG_SYNC_PROJECT": config.project,
                 "GONG_SYNC_SLACK_WEBHOOK_SECRET": slack.resource_name},
            secrets=[slack.secret.id],
            memory="256Mi",
            max_instances=3,
            deployment=deployment,
        ),
        opts=after_builder,
    )  # fmt: skip


def build(config: StackConfig) -> Stack:
    """Declare every resource of the system."""
    project = gcp.organizations.get_project(project_id=config.project)
    apis = Apis("apis", ApisArgs(config.project))
    after_apis = pulumi.ResourceOptions(depends_on=[apis])
    messaging = Messaging(
        "messaging", MessagingArgs(config.project, project.number), opts=after_apis
    )
    database = Database(
        "gong-sync-sql",
        DatabaseArgs(
            region=config.region,
            tier=config.sql_tier,
            private_network=config.sql_private_network,
            production=config.production,
            version=config.sql_version,
        ),
        opts=after_apis,
    )
    bucket, source_object = _function_source(config, after_apis)
    pusher = _push_invoker(messaging, after_apis)
    builder, builder_grants = function_builder(config.project, bucket.name, after_apis)
    # A function's first build must not start before its builder may write logs and images.
    after_builder = pulumi.ResourceOptions(depends_on=[apis, *builder_grants])
    env = _sync_env(config, messaging, database)
    deployment = Deployment(
        project=config.project,
        region=config.region,
        source_bucket=bucket.name,
        source_object=source_object.name,
        pubsub_agent=messaging.pubsub_agent,
        invoker=pusher.email,
        build_service_account=builder.name,  # projects/P/serviceAccounts/E
    )
    functions = _sync_functions(config, messaging, database, env, deployment, after_builder)
    alert = _alert_function(config, messaging, deployment, after_apis, after_builder)
    schedules = tuple(
        ScheduledTrigger(
            name,
            SchedulerArgs(messaging.trigger.id, config.region, cron, dict(message)),
            opts=after_apis,
        )
        for name, cron, message in SCHEDULES
    )
    Observability(
        "observability",
        ObservabilityArgs(messaging.dead_letter.name, _alert_channels(config)),
        opts=after_apis,
    )
    return Stack(messaging, database, functions, alert, schedules)
