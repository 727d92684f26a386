"""Cloud Function entrypoints: one per source, plus the alerting function on the dead letters.

Each stays thin: the CloudEvent goes to gong_sync.cloud_function, which decodes it, picks
the source and calls the engine.
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from gong_sync import alerting, cloud_function


@functions_framework.cloud_event
def sync_calls(event: CloudEvent) -> None:
    """Pub/Sub trigger → sync the calls source (calls, speakers, transcripts, links)."""
    cloud_function.handle_sync("calls", event)


@functions_framework.cloud_event
def sync_emails(event: CloudEvent) -> None:
    """Pub/Sub trigger → sync the emails source."""
    cloud_function.handle_sync("emails", event)


@functions_framework.cloud_event
def sync_opportunities(event: CloudEvent) -> None:
    """Pub/Sub trigger → sync the opportunities source."""
    cloud_function.handle_sync("opportunities", event)


@functions_framework.cloud_event
def sync_contacts(event: CloudEvent) -> None:
    """Pub/Sub trigger → sync the contacts source."""
    cloud_function.handle_sync("contacts", event)


@functions_framework.cloud_event
def alert(event: CloudEvent) -> None:
    """Dead-letter topic → log at ERROR and post an aggregated Slack message."""
    alerting.handle_alert(event)
