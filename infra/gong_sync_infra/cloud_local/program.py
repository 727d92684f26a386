"""The deployed topology, read from the Pulumi program's resource inputs under mocks.

The harness never restates a platform setting: every function, environment variable,
subscription policy and scheduler payload it runs with comes from what the program asked
Google for (`pulumi.runtime.set_mocks`, as pulumi/examples' unit tests run a program).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from gong_sync_infra.stack import StackConfig, build

FUNCTION = "gcp:cloudfunctionsv2/function:Function"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC = "gcp:pubsub/topic:Topic"
SCHEDULER_JOB = "gcp:cloudscheduler/job:Job"
SECRET = "gcp:secretmanager/secret:Secret"  # noqa: S105 - a resource type
LOG_METRIC = "gcp:logging/metric:Metric"
BUCKET_OBJECT = "gcp:storage/bucketObject:BucketObject"


@dataclass
class Registered:
    """One resource as the engine would have received it."""

    type: str
    name: str
    inputs: dict[str, Any]


class ProgramMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs, plus the computed outputs the program reads back."""

    def __init__(
        self,
        project: str = "proj",
        project_number: str = "123456789",
        password: str = "mock",  # noqa: S107
    ) -> None:
        """Answer as this project would; `password` is what the random password resolves to."""
        self.project = project
        self.project_number = project_number
        self.password = password
        self.resources: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """Record the resource; return an id and outputs shaped like Google's."""
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs)))
        out = dict(args.inputs)
        rid = f"{args.name}-id"
        p = self.project
        if args.typ == "gcp:serviceaccount/account:Account":
            out["email"] = f"{args.inputs['accountId']}@{p}.iam.gserviceaccount.com"
            out["name"] = f"projects/{p}/serviceAccounts/{out['email']}"
        elif args.typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            out["email"] = f"service-{self.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            out["result"] = self.password
        elif args.typ == SECRET:
            rid = f"projects/{p}/secrets/{args.inputs['secretId']}"
        elif args.typ == "gcp:sql/databaseInstance:DatabaseInstance":
            out["connectionName"] = f"{p}:europe-west1:gong-sync-sql"
            out["name"] = args.name
        elif args.typ == TOPIC:
            rid = f"projects/{p}/topics/{args.inputs['name']}"
        elif args.typ == FUNCTION:
            out["serviceConfig"] = {
                **args.inputs["serviceConfig"],
                "uri": f"https://{args.name}.a.run.app",
                "service": f"projects/{p}/locations/europe-west1/services/{args.name}",
            }
        return rid, out

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        """Answer the data sources the program reads."""
        if args.token == "gcp:organizations/getProject:getProject":  # noqa: S105
            return {"number": self.project_number, "projectId": self.project}, []
        return {}, []

    def of(self, typ: str) -> list[Registered]:
        """Every registered resource of one type."""
        return [r for r in self.resources if r.type == typ]


def run_program(config: StackConfig, mocks: ProgramMocks | None = None) -> ProgramMocks:
    """Run the program against mocks and wait for every resource to register."""
    mocks = mocks or ProgramMocks(config.project)
    pulumi.runtime.set_mocks(mocks, project="gong-sync", stack="local", preview=False)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[Any]:
        stack = build(config)
        return pulumi.Output.all(
            *[s.job.urn for s in stack.schedules], stack.alert.subscription.urn,
            *[f.subscription.urn for f in stack.functions.values()],
        )  # fmt: skip

    run()
    return mocks


def _seconds(duration: str) -> float:
    """A protobuf Duration's JSON text ("10s", "1.5s") in seconds."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    if found is None:
        raise ValueError(f"not a duration: {duration!r}")
    return float(found[1])


def _short(path: str) -> str:
    """A topic's name from its path (projects/P/topics/NAME) or its name."""
    return path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Function:
    """One gen2 function: what it runs, with which environment, and within which limits."""

    name: str  # the Cloud Run service name (K_SERVICE)
    entry_point: str
    runtime: str
    env: dict[str, str]
    max_instances: int
    concurrency: int
    timeout_seconds: float
    signature_type: str | None  # FUNCTION_SIGNATURE_TYPE at launch, if the build sets it
    uri: str


@dataclass(frozen=True)
class Subscription:
    """One subscription, push or pull, with its delivery policies."""

    name: str
    topic: str
    push_to: str | None  # the function whose URI is the push endpoint
    filter: str | None
    ack_deadline_seconds: int
    dead_letter_topic: str | None
    max_delivery_attempts: int | None
    minimum_backoff_seconds: float | None
    maximum_backoff_seconds: float | None


@dataclass(frozen=True)
class Schedule:
    """A Cloud Scheduler job publishing to a topic."""

    topic: str
    data: bytes
    attributes: dict[str, str]
    schedule: str


@dataclass(frozen=True)
class Topology:
    """What the program deploys that runs: the harness's whole input."""

    project: str
    archive: Path
    topics: list[str]
    functions: dict[str, Function]
    subscriptions: list[Subscription]
    schedules: list[Schedule]
    secrets: list[str]  # secret ids
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> inputs


def _function(resource: Registered) -> Function:
    service = resource.inputs["serviceConfig"]
    build_config = resource.inputs["buildConfig"]
    return Function(
        name=resource.inputs["name"],
        entry_point=build_config["entryPoint"],
        runtime=build_config["runtime"],
        env={k: str(v) for k, v in (service.get("environmentVariables") or {}).items()},
        max_instances=int(service.get("maxInstanceCount") or 100),
        # gen2's default: one request at a time per instance ("Concurrency" in Cloud Run
        # functions' docs) unless max_instance_request_concurrency says otherwise.
        concurrency=int(service.get("maxInstanceRequestConcurrency") or 1),
        timeout_seconds=float(service.get("timeoutSeconds") or 60),
        # Google's buildpacks set FUNCTION_SIGNATURE_TYPE at launch only from the build's
        # GOOGLE_FUNCTION_SIGNATURE_TYPE (GoogleCloudPlatform/buildpacks, gcpbuildpack
        # `SetFunctionsEnvVars`); without it functions-framework defaults to http, and the
        # decorator in main.py is what makes it serve a CloudEvent function.
        signature_type=(build_config.get("environmentVariables") or {}).get(
            "GOOGLE_FUNCTION_SIGNATURE_TYPE"
        ),
        uri=f"https://{resource.name}.a.run.app",
    )


def _subscription(resource: Registered, by_uri: dict[str, str]) -> Subscription:
    inputs = resource.inputs
    push = inputs.get("pushConfig") or {}
    dead = inputs.get("deadLetterPolicy") or {}
    retry = inputs.get("retryPolicy") or {}
    endpoint = push.get("pushEndpoint")
    if endpoint is not None and endpoint not in by_uri:
        raise ValueError(f"{inputs['name']} pushes to {endpoint}, which no function serves")
    return Subscription(
        name=inputs["name"],
        topic=_short(inputs["topic"]),
        push_to=by_uri[endpoint] if endpoint else None,
        filter=inputs.get("filter") or None,
        ack_deadline_seconds=int(inputs.get("ackDeadlineSeconds") or 10),
        dead_letter_topic=_short(dead["deadLetterTopic"]) if dead else None,
        max_delivery_attempts=int(dead["maxDeliveryAttempts"]) if dead else None,
        minimum_backoff_seconds=_seconds(retry["minimumBackoff"]) if retry else None,
        maximum_backoff_seconds=_seconds(retry["maximumBackoff"]) if retry else None,
    )


def _schedule(resource: Registered) -> Schedule:
    target = resource.inputs["pubsubTarget"]
    return Schedule(
        topic=_short(target["topicName"]),
        data=base64.b64decode(target.get("data") or ""),
        attributes=dict(target.get("attributes") or {}),
        schedule=resource.inputs["schedule"],
    )


def topology(mocks: ProgramMocks) -> Topology:
    """The runnable part of a program run: functions, messaging, schedules, secrets."""
    functions = {f.name: f for f in map(_function, mocks.of(FUNCTION))}
    by_uri = {f.uri: f.name for f in functions.values()}
    (source,) = mocks.of(BUCKET_OBJECT)
    asset = source.inputs["source"]
    return Topology(
        project=mocks.project,
        archive=Path(asset.path),  # the very file `pulumi up` uploads
        topics=[t.inputs["name"] for t in mocks.of(TOPIC)],
        functions=functions,
        subscriptions=[_subscription(s, by_uri) for s in mocks.of(SUBSCRIPTION)],
        schedules=[_schedule(j) for j in mocks.of(SCHEDULER_JOB)],
        secrets=[s.inputs["secretId"] for s in mocks.of(SECRET)],
        metrics={m.inputs["name"]: m.inputs for m in mocks.of(LOG_METRIC)},
    )


def read(config: StackConfig) -> Topology:
    """Run the program for this configuration and return what it deploys."""
    return topology(run_program(config))
