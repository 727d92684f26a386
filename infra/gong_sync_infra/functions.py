"""One Cloud Function per source (and the alerting one), each with its own service account,
least-privilege IAM, and a push subscription the stack owns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

# Pub/Sub allows 5 to 100. A request for a busy source (a full refresh while a backfill's
# continuations run) is answered 500 until the chain ends; with the retry policy's backoff
# (10 s doubling to 600 s) 20 attempts wait about 2.7 h, where 5 gave up after 5 minutes.
MAX_DELIVERY_ATTEMPTS = 20


@dataclass
class Deployment:
    """What every function shares: where it runs, its code, and who pushes to it."""

    project: pulumi.Input[str]
    region: pulumi.Input[str]
    source_bucket: pulumi.Input[str]
    source_object: pulumi.Input[str]
    pubsub_agent: pulumi.Input[str]
    invoker: pulumi.Input[str]  # the e-mail of the account Pub/Sub pushes as (OIDC)
    build_service_account: pulumi.Input[str] | None = None  # projects/P/serviceAccounts/E


@dataclass
class FunctionArgs:
    """What one function runs, what it may touch, and which topic feeds it."""

    deployment: Deployment
    entry_point: str
    topic_id: pulumi.Input[str]
    env: Mapping[str, pulumi.Input[str]]
    secrets: Sequence[pulumi.Input[str]] = ()  # Secret ids the function may read
    project_roles: Sequence[tuple[str, pulumi.Input[str]]] = ()  # (role, project)
    private_network: str | None = None  # reach private-IP Cloud SQL through direct VPC egress
    private_subnetwork: str | None = None  # the subnetwork of that egress (else the network's)
    datasets: Sequence[tuple[pulumi.Input[str], pulumi.Input[str]]] = ()  # (project, dataset)
    publish_to: Sequence[pulumi.Input[str]] = ()  # topic names
    dead_letter_topic: pulumi.Input[str] | None = None
    max_instances: int = 1
    timeout_seconds: int = 540
    # Pub/Sub subscription filter: only the messages this function should see are pushed.
    message_filter: str | None = None
    memory: str = "1Gi"
    labels: Mapping[str, str] = field(default_factory=dict)


class SourceFunction(pulumi.ComponentResource):
    """A gen2 function on python312 behind a push subscription with a dead-letter policy.

    Push with OIDC rather than an Eventarc trigger: Eventarc creates and owns its subscription,
    so the stack could not set the dead-letter and retry policies on it.
    """

    def __init__(
        self, name: str, args: FunctionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:functions:SourceFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        d = args.deployment
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=f"gs-{name}"[:30],
            display_name=f"gong-sync {name}",
            opts=child,
        )
        member = self.account.email.apply(lambda e: f"serviceAccount:{e}")
        for role, project in args.project_roles:
            gcp.projects.IAMMember(
                f"{name}-{role.split('/')[-1]}", project=project, role=role, member=member,
                opts=child,
            )  # fmt: skip
        for i, (project, dataset) in enumerate(args.datasets):
            gcp.bigquery.DatasetIamMember(
                f"{name}-dataviewer-{i}", project=project, dataset_id=dataset,
                role="roles/bigquery.dataViewer", member=member, opts=child,
            )  # fmt: skip
        for i, secret in enumerate(args.secrets):
            gcp.secretmanager.SecretIamMember(
                f"{name}-secret-{i}", secret_id=secret,
                role="roles/secretmanager.secretAccessor", member=member, opts=child,
            )  # fmt: skip
        for i, topic in enumerate(args.publish_to):
            gcp.pubsub.TopicIAMMember(
                f"{name}-publish-{i}", topic=topic, role="roles/pubsub.publisher",
                member=member, opts=child,
            )  # fmt: skip
        self.function = gcp.cloudfunctionsv2.Function(
            name,
            name=f"gong-sync-{name}",
            location=d.region,
            labels={"app": "gong-sync", **args.labels},
            build_config={
                "runtime": "python312",
                "entry_point": args.entry_point,
                # The entrypoints declare themselves CloudEvent functions (their decorator):
                # functions-framework turns a push envelope into a CloudEvent for them.
                # Built as an account of our own: new projects' default Cloud Build account
                # may lack the roles.
                "service_account": d.build_service_account,
                "source": {
                    "storage_source": {"bucket": d.source_bucket, "object": d.source_object}
                },
            },
            service_config={
                "max_instance_count": args.max_instances,
                "min_instance_count": 0,
                "available_memory": args.memory,
                "timeout_seconds": args.timeout_seconds,
                "service_account_email": self.account.email,
                "environment_variables": dict(args.env),
                "ingress_settings": "ALLOW_ALL",  # Pub/Sub push comes from outside the VPC
                "all_traffic_on_latest_revision": True,
                **(
                    {
                        "direct_vpc_network_interfaces": [
                            {
                                "network": args.private_network,
                                **(
                                    {"subnetwork": args.private_subnetwork}
                                    if args.private_subnetwork
                                    else {}
                                ),
                            }
                        ],
                        "direct_vpc_egress": "VPC_EGRESS_PRIVATE_RANGES_ONLY",
                    }
                    if args.private_network
                    else {}
                ),
            },
            opts=child,
        )
        # Only the push identity may invoke the function: no public access.
        gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker",
            project=d.project,
            location=d.region,
            name=self.function.service_config.apply(lambda c: (c.service if c else None) or ""),
            role="roles/run.invoker",
            member=pulumi.Output.concat("serviceAccount:", d.invoker),
            opts=child,
        )
        policy: gcp.pubsub.SubscriptionDeadLetterPolicyArgsDict | None = None
        if args.dead_letter_topic is not None:
            policy = {
                "dead_letter_topic": args.dead_letter_topic,
                "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
            }
        push: gcp.pubsub.SubscriptionPushConfigArgsDict = {
            "push_endpoint": self.function.service_config.apply(
                lambda c: (c.uri if c else None) or ""
            ),
            "oidc_token": {"service_account_email": d.invoker},
        }
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-sub",
            name=f"gong-sync-{name}",
            topic=args.topic_id,
            ack_deadline_seconds=600,  # the function's own 540 s, plus margin
            push_config=push,
            dead_letter_policy=policy,
            filter=args.message_filter,
            retry_policy={"minimum_backoff": "10s", "maximum_backoff": "600s"},
            expiration_policy={"ttl": ""},
            opts=child,
        )
        if policy is not None:
            # Dead-lettering needs the service agent to pull from (and ack on) the subscription.
            gcp.pubsub.SubscriptionIAMMember(
                f"{name}-agent-subscriber", subscription=self.subscription.name,
                role="roles/pubsub.subscriber", member=d.pubsub_agent, opts=child,
            )  # fmt: skip
        self.uri = self.function.service_config.apply(lambda c: (c.uri if c else None) or "")
        self.register_outputs({"uri": self.uri})
