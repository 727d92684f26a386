"""Log-based metrics, alert policies and a dashboard, all built from the sync's JSON logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

# Every run writes one line whose jsonPayload.run holds the counts (see gong_sync.engine).
RUN_LINE = 'resource.type="cloud_run_revision" AND jsonPayload.run.source:*'
DEAD_LETTER_METRIC = "pubsub.googleapis.com/topic/send_message_operation_count"
# Cloud Logging moves the JSON key "logging.googleapis.com/labels" into the entry's labels.
SOURCE_LABEL = {"source": "EXTRACT(labels.source)"}


@dataclass
class ObservabilityArgs:
    """The dead-letter topic to watch, and where alerts go."""

    dead_letter_topic: pulumi.Input[str]
    notification_channels: Sequence[pulumi.Input[str]] = ()


class Observability(pulumi.ComponentResource):
    """Rows synced and errors per source; alerts on errors, dead letters and staleness."""

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gong-sync:ops:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        label: list[gcp.logging.MetricMetricDescriptorLabelArgsDict] = [
            {"key": "source", "value_type": "STRING"}
        ]
        self.rows = _per_run_distribution("rows-synced", "rows_upserted", "1", 32, label, child)
        # What BigQuery billed each run (README, Cost): a scan that grows shows up here first.
        self.bytes_billed = _per_run_distribution(
            "bytes-billed", "bytes_billed", "By", 40, label, child
        )
        self.successes = gcp.logging.Metric(
            "gong-sync-successful-runs",
            name="gong_sync/successful_runs",
            filter=f'{RUN_LINE} AND jsonPayload.run.status="success"',
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "labels": label},
            label_extractors={"source": "EXTRACT(jsonPayload.run.source)"},
            opts=child,
        )  # fmt: skip
        self.errors = gcp.logging.Metric(
            "gong-sync-errors",
            name="gong_sync/errors",
            filter='resource.type="cloud_run_revision" AND severity>=ERROR AND labels.source:*',
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "labels": label},
            label_extractors=SOURCE_LABEL,
            opts=child,
        )
        # The reconciliation's ERROR line when drift remains after its repair (reconcile.py):
        # its own metric and policy, since what to do differs from a failed run.
        self.drift = gcp.logging.Metric(
            "gong-sync-unrepaired-drift",
            name="gong_sync/unrepaired_drift",
            filter='resource.type="cloud_run_revision" AND severity>=ERROR'
            " AND jsonPayload.verify.remaining:*",
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "labels": label},
            label_extractors=SOURCE_LABEL,
            opts=child,
        )
        channels = list(args.notification_channels)

        def policy(
            key: str,
            condition: gcp.monitoring.AlertPolicyConditionArgsDict,
            doc: str,
            *more: gcp.monitoring.AlertPolicyConditionArgsDict,
        ) -> None:
            gcp.monitoring.AlertPolicy(
                f"gong-sync-{key}",
                display_name=f"gong-sync: {condition['display_name']}",
                combiner="OR",
                conditions=[condition, *more],
                notification_channels=channels,
                documentation={"content": doc, "mime_type": "text/markdown"},
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[self.errors, self.successes, self.drift]
                ),
            )

        policy(
            "function-errors",
            _any_in_5_min(
                "function errors",
                'metric.type="logging.googleapis.com/user/gong_sync/errors"'
                ' AND resource.type="cloud_run_revision"',
            ),
            "A sync function logged an ERROR. See the README's troubleshooting section.",
        )
        policy(
            "dead-letters",
            _any_in_5_min(
                "dead letters published",
                pulumi.Output.concat(
                    f'metric.type="{DEAD_LETTER_METRIC}"'
                    ' AND resource.type="pubsub_topic" AND resource.label.topic_id="',
                    args.dead_letter_topic,
                    '"',
                ),
            ),
            "Records or triggers were dead-lettered. Inspect the dead-letter archive subscription.",
            # Triggers forwarded by a subscription's dead-letter policy: Pub/Sub counts them
            # on the subscription (dead_letter_message_count), which is what says a trigger
            # was lost to retries, whatever the topic's own publish count shows.
            _any_in_5_min(
                "triggers dead-lettered by a subscription",
                'metric.type="pubsub.googleapis.com/subscription/dead_letter_message_count"'
                ' AND resource.type="pubsub_subscription"'
                ' AND resource.label.subscription_id=starts_with("gong-sync-sync-")',
            ),
        )
        policy(
            "unrepaired-drift",
            _any_in_5_min(
                "drift the reconciliation did not repair",
                'metric.type="logging.googleapis.com/user/gong_sync/unrepaired_drift"'
                ' AND resource.type="cloud_run_revision"',
            ),
            "The scheduled verify left drift between BigQuery and Postgres after `--fix`. Run"
            " `gong-sync verify --source <source> --json` for the keys, then the README's"
            " reconciliation runbook.",
        )
        policy(
            "freshness",
            {"display_name": "no successful run for 2 h", "condition_absent": {
                "filter": 'metric.type="logging.googleapis.com/user/gong_sync/successful_runs"'
                          ' AND resource.type="cloud_run_revision"',
                "duration": "7200s",
                "aggregations": [{"alignment_period": "600s", "per_series_aligner": "ALIGN_SUM",
                                  "cross_series_reducer": "REDUCE_SUM",
                                  "group_by_fields": ["metric.label.source"]}],
            }},
            "A source has not synced successfully for 2 hours (SLA: data at most 1 h old).",
        )  # fmt: skip
        self.dashboard = gcp.monitoring.Dashboard(
            "gong-sync-dashboard",
            dashboard_json=pulumi.Output.from_input(args.dead_letter_topic).apply(
                lambda topic: json.dumps(_dashboard(topic))
            ),
            opts=child,
        )
        self.register_outputs({})


def _any_in_5_min(
    title: str, metric_filter: pulumi.Input[str]
) -> gcp.monitoring.AlertPolicyConditionArgsDict:
    """A condition that fires when the metric counts anything within five minutes."""
    return {
        "display_name": title,
        "condition_threshold": {
            "filter": metric_filter,
            "comparison": "COMPARISON_GT",
            "threshold_value": 0,
            "duration": "0s",
            "aggregations": [{"alignment_period": "300s", "per_series_aligner": "ALIGN_SUM"}],
        },
    }


def _per_run_distribution(
    name: str,
    field: str,
    unit: str,
    buckets: int,
    label: list[gcp.logging.MetricMetricDescriptorLabelArgsDict],
    opts: pulumi.ResourceOptions,
) -> gcp.logging.Metric:
    """A field of each run's summary line, as a distribution per source (power-of-2 buckets)."""
    return gcp.logging.Metric(
        f"gong-sync-{name}",
        name=f"gong_sync/{name.replace('-', '_')}",
        filter=RUN_LINE,
        metric_descriptor={"metric_kind": "DELTA", "value_type": "DISTRIBUTION",
                           "unit": unit, "labels": label},
        value_extractor=f"EXTRACT(jsonPayload.run.{field})",
        bucket_options={"exponential_buckets": {"num_finite_buckets": buckets,
                                                "growth_factor": 2, "scale": 1}},
        label_extractors={"source": "EXTRACT(jsonPayload.run.source)"},
        opts=opts,
    )  # fmt: skip


def _chart(title: str, metric: str, aligner: str) -> dict[str, object]:
    return {
        "title": title,
        "xyChart": {"dataSets": [{"timeSeriesQuery": {"timeSeriesFilter": {
            "filter": f'metric.type="{metric}"',
            "aggregation": {"alignmentPeriod": "3600s", "perSeriesAligner": aligner,
                            "crossSeriesReducer": "REDUCE_SUM",
                            "groupByFields": ["metric.label.source"]},
        }}, "plotType": "STACKED_BAR"}]},
    }  # fmt: skip


def _heatmap(title: str, metric: str) -> dict[str, object]:
    """A distribution as what it is: how many runs upserted how many rows, hour by hour.

    Summing or counting a distribution in a bar chart shows runs, not rows; Cloud
    Monitoring charts distribution-valued metrics as heatmaps, or as their percentiles and
    means ("About distribution-valued metrics").
    """
    return {
        "title": title,
        "xyChart": {"dataSets": [{"timeSeriesQuery": {"timeSeriesFilter": {
            "filter": f'metric.type="{metric}"',
            "aggregation": {"alignmentPeriod": "3600s", "perSeriesAligner": "ALIGN_DELTA",
                            "crossSeriesReducer": "REDUCE_SUM"},
        }}, "plotType": "HEATMAP"}]},
    }  # fmt: skip


def _dashboard(dead_letter_topic: str) -> dict[str, object]:
    return {
        "displayName": "gong-sync",
        "mosaicLayout": {"columns": 12, "tiles": [
            {"width": 6, "height": 4, "widget": _heatmap(
                "Rows upserted per run", "logging.googleapis.com/user/gong_sync/rows_synced")},
            {"xPos": 6, "width": 6, "height": 4, "widget": _chart(
                "Successful runs per source",
                "logging.googleapis.com/user/gong_sync/successful_runs", "ALIGN_SUM")},
            {"yPos": 4, "width": 6, "height": 4, "widget": _chart(
                "Errors per source", "logging.googleapis.com/user/gong_sync/errors", "ALIGN_SUM")},
            {"yPos": 8, "width": 6, "height": 4, "widget": _heatmap(
                "BigQuery bytes billed per run",
                "logging.googleapis.com/user/gong_sync/bytes_billed")},
            {"xPos": 6, "yPos": 4, "width": 6, "height": 4, "widget": {
                "title": "Dead letters published",
                "xyChart": {"dataSets": [{"timeSeriesQuery": {"timeSeriesFilter": {
                    "filter": f'metric.type="{DEAD_LETTER_METRIC}"'
                              f' AND resource.label.topic_id="{dead_letter_topic}"',
                    "aggregation": {"alignmentPeriod": "3600s", "perSeriesAligner": "ALIGN_SUM"},
                }}, "plotType": "STACKED_BAR"}]}}},
        ]},
    }  # fmt: skip
