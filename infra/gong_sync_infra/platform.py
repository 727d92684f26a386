"""Project-wide pieces: enabled APIs, topics, the scheduler job, and secrets."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

APIS = (
    "bigquery.googleapis.com", "cloudbuild.googleapis.com", "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com", "iam.googleapis.com", "logging.googleapis.com",
    "monitoring.googleapis.com", "pubsub.googleapis.com", "run.googleapis.com",
    "artifactregistry.googleapis.com", "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    # The Storage Read API: query results longer than a page are read through it.
    "bigquerystorage.googleapis.com",
    # IAM bindings on the project go through Resource Manager; new projects may lack it.
    "cloudresourcemanager.googleapis.com",
)  # fmt: skip

HOURLY = "0 * * * *"
HOURLY_MESSAGE = {"mode": "incremental"}
# Reconciliation once a day, off the hour: it repairs what hourly runs cannot see (deletes
# that never move the cursor, rows stamped before the lookback). Daily it compares keys only;
# comparing sampled values reads every column a target reads (all transcript sentences, about
# $0.25 at 50M rows), so that is weekly.
DAILY = "30 3 * * *"
DAILY_MESSAGE = {"mode": "verify", "fix": True, "sample": 0}
WEEKLY = "30 4 * * 0"
WEEKLY_MESSAGE = {"mode": "verify", "fix": True, "sample": 500}
# The Cloud Scheduler jobs: name, cron (UTC) and the trigger message each publishes.
SCHEDULES = (
    ("gong-sync-hourly", HOURLY, HOURLY_MESSAGE),
    ("gong-sync-daily-verify", DAILY, DAILY_MESSAGE),
    ("gong-sync-weekly-verify", WEEKLY, WEEKLY_MESSAGE),
)


@dataclass
class ApisArgs:
    """Which project to enable the APIs in."""

    project: pulumi.Input[str]


class Apis(pulumi.ComponentResource):
    """The Google APIs the system uses, enabled (and left enabled on destroy)."""

    def __init__(
        self, name: str, args: ApisArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:platform:Apis", name, None, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in APIS
        ]
        self.register_outputs({})


@dataclass
class MessagingArgs:
    """Topic names, and the project whose Pub/Sub service agent handles dead letters."""

    project: pulumi.Input[str]
    project_number: pulumi.Input[str]
    trigger_topic: str = "sync-trigger"
    dead_letter_topic: str = "sync-dead-letter"


class Messaging(pulumi.ComponentResource):
    """The trigger and dead-letter topics; the dead-letter topic keeps everything 7 days."""

    def __init__(
        self, name: str, args: MessagingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:platform:Messaging", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.trigger = gcp.pubsub.Topic(args.trigger_topic, name=args.trigger_topic, opts=child)
        self.dead_letter = gcp.pubsub.Topic(
            args.dead_letter_topic, name=args.dead_letter_topic, opts=child
        )
        # Its own subscription, so nothing published there is lost even if alerting is down;
        # replay from here (see the README's troubleshooting).
        self.dead_letter_archive = gcp.pubsub.Subscription(
            f"{args.dead_letter_topic}-archive",
            name=f"{args.dead_letter_topic}-archive",
            topic=self.dead_letter.id,
            message_retention_duration="604800s",
            retain_acked_messages=True,
            ack_deadline_seconds=60,
            expiration_policy={"ttl": ""},  # never expires
            opts=child,
        )
        # The Pub/Sub service agent exists only once Google creates it, which on a new
        # project may be after our first IAM binding names it: create it explicitly first.
        identity = gcp.projects.ServiceIdentity(
            f"{name}-pubsub-agent",
            project=args.project,
            service="pubsub.googleapis.com",
            opts=child,
        )
        self.pubsub_agent = pulumi.Output.concat("serviceAccount:", identity.email)
        # Dead-letter policies publish as the Pub/Sub service agent.
        gcp.pubsub.TopicIAMMember(
            f"{args.dead_letter_topic}-agent-publisher",
            topic=self.dead_letter.name,
            role="roles/pubsub.publisher",
            member=self.pubsub_agent,
            opts=child,
        )
        self.register_outputs(
            {"trigger_topic": self.trigger.name, "dead_letter_topic": self.dead_letter.name}
        )


@dataclass
class SchedulerArgs:
    """The topic a job publishes to, when, and the trigger message it publishes."""

    topic_id: pulumi.Input[str]
    region: pulumi.Input[str]
    schedule: str = HOURLY
    message: dict[str, object] = field(default_factory=lambda: dict(HOURLY_MESSAGE))


class ScheduledTrigger(pulumi.ComponentResource):
    """Cloud Scheduler publishing a trigger message to the trigger topic on a schedule."""

    def __init__(
        self, name: str, args: SchedulerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Its first name, kept as an alias: a stack deployed before does not replace the job.
        renamed = pulumi.ResourceOptions(
            aliases=[pulumi.Alias(type_="gong-sync:platform:HourlyTrigger")]
        )
        opts = pulumi.ResourceOptions.merge(opts, renamed)
        super().__init__("gong-sync:platform:ScheduledTrigger", name, None, opts)
        self.job = gcp.cloudscheduler.Job(
            name,
            region=args.region,
            schedule=args.schedule,
            time_zone="Etc/UTC",
            pubsub_target={
                "topic_name": args.topic_id,
                "data": base64.b64encode(json.dumps(args.message).encode()).decode(),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})


@dataclass
class SecretArgs:
    """A secret's id and its value (a Pulumi secret)."""

    secret_id: str
    value: pulumi.Input[str]


class StoredSecret(pulumi.ComponentResource):
    """A Secret Manager secret with one version; functions read it by resource name."""

    def __init__(
        self, name: str, args: SecretArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:platform:StoredSecret", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secret = gcp.secretmanager.Secret(
            name, secret_id=args.secret_id, replication={"auto": {}}, opts=child
        )
        self.version = gcp.secretmanager.SecretVersion(
            f"{name}-v", secret=self.secret.id, secret_data=pulumi.Output.secret(args.value),
            opts=child,
        )  # fmt: skip
        # The name the code resolves through google-cloud-secret-manager: not the value.
        self.resource_name = pulumi.Output.concat(self.secret.id, "/versions/latest")
        self.register_outputs({"secret": self.secret.id})
