"""A Cloud Function that always fails, to exercise the dead-letter policy end to end."""

from __future__ import annotations

import os

import functions_framework
from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def always_fail(event: CloudEvent) -> None:
    """Count the delivery, then fail with HTTP 500."""
    with open(os.environ["FAILING_FUNCTION_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{event['id']}\n")
    raise RuntimeError("this function always fails")
