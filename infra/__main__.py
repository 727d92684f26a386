"""`pulumi up` entry point: read the stack configuration, declare the system, export outputs."""

from __future__ import annotations

import pulumi

from gong_sync_infra.stack import StackConfig, build

gcp_config = pulumi.Config("gcp")
config = pulumi.Config()
stack = build(
    StackConfig(
        project=gcp_config.require("project"),
        region=gcp_config.get("region") or "europe-west1",
        sources=tuple(config.get_object("sources") or StackConfig.sources),
        gong_dataset=config.get("gongDataset") or "gongio_ft",
        salesforce_dataset=config.get("salesforceDataset") or "salesforce",
        # Optional keys default to "" in Pulumi.yaml (a key with no default is required).
        bigquery_project=config.get("bigqueryProject") or None,
        sql_tier=config.get("sqlTier") or "db-custom-1-3840",
        sql_private_network=config.get("sqlPrivateNetwork") or None,
        sql_subnetwork=config.get("sqlSubnetwork") or None,
        sql_version=config.get("sqlVersion") or StackConfig.sql_version,
        production=config.get_bool("production") or False,
        slack_webhook_url=config.require_secret("slackWebhookUrl"),
        alert_email=config.get("alertEmail") or None,
    )
)

pulumi.export("trigger_topic", stack.messaging.trigger.name)
pulumi.export("dead_letter_topic", stack.messaging.dead_letter.name)
pulumi.export("dead_letter_archive", stack.messaging.dead_letter_archive.name)
pulumi.export("function_uris", {name: fn.uri for name, fn in stack.functions.items()})
pulumi.export("alert_function_uri", stack.alert.uri)
pulumi.export("cloud_sql_connection_name", stack.database.connection_name)
pulumi.export(
    "resync_command",
    pulumi.Output.concat(
        "gcloud pubsub topics publish ", stack.messaging.trigger.name,
        " --project ", gcp_config.require("project"),
        """ --message '{"sources": ["calls"], "mode": "full_refresh"}'""",
    ),
)  # fmt: skip
