"""The program's subscription filters, and the attributes our publishers set, agree.

A message for one source (a continuation, a single-source resync) reaches only that
source's function; a message for every source (the hourly one, a malformed one) reaches them
all. The filters are read from the Pulumi program's inputs, never restated, and applied by
the stand-in in pubsub_filter.py to what the real Pub/Sub client published to the emulator.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from gong_sync import trigger
from gong_sync_infra.cloud_local.pubsub_filter import matches
from tests.pubsub_emulator import create_pull_subscription, create_topic, pull_all, topic_path
from tests.test_infra import SOURCES, deploy, subscription_filters

_n = itertools.count()


def test_the_filter_stand_in_reads_pubsubs_language() -> None:
    assert matches('attributes.source = "calls"', {"source": "calls"})
    assert not matches('attributes.source = "calls"', {"source": "emails"})
    assert matches("NOT attributes:source", {})
    assert not matches("NOT attributes:source", {"source": ""})
    assert matches('(attributes:a AND attributes.b != "x") OR attributes:c', {"a": "1"})
    with pytest.raises(ValueError, match="unsupported"):
        matches('hasPrefix(attributes.a, "x")', {})


def test_a_message_for_one_source_reaches_only_that_source(
    pubsub_host: str, tmp_path: Path
) -> None:
    filters = subscription_filters(deploy(tmp_path))
    project, topic = "gong-sync-test", f"filtered-{next(_n)}"
    create_topic(project, topic)
    watch = create_pull_subscription(project, f"{topic}-all", topic)
    hourly = trigger.Trigger()
    sent = [hourly] + [trigger.Trigger(sources=(s,)) for s in SOURCES]
    with pubsub_v1.PublisherClient() as publisher:
        for wanted in sent:
            data = json.dumps(wanted.to_json()).encode()
            attributes = trigger.attributes_for(wanted.sources)
            publisher.publish(topic_path(project, topic), data, **attributes).result(timeout=30)
    delivered = pull_all(watch, expect=len(sent), timeout=20)
    for source in SOURCES:
        rule = filters[f"gong-sync-sync-{source}"]
        assert rule is not None
        got = [json.loads(m.data) for m in delivered if matches(rule, dict(m.attributes))]
        want = [hourly.to_json(), {"mode": "incremental", "sources": [source]}]
        assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps), source
