"""Real Pub/Sub for the tests: helpers over the real clients on the emulator, push targets."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

# --- thin helpers over the real google-cloud-pubsub clients (need PUBSUB_EMULATOR_HOST) ---


def topic_path(project: str, topic: str) -> str:
    """A topic's full path; a full path passes through unchanged."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """A subscription's full path; a full path passes through unchanged."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


def create_topic(project: str, name: str) -> str:
    """Create a topic and return its path."""
    path = topic_path(project, name)
    with pubsub_v1.PublisherClient() as client:
        client.create_topic(request={"name": path}, timeout=30)
    return path


def create_push_subscription(
    project: str,
    name: str,
    topic: str,
    endpoint: str,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 1.0,
    ack_deadline_s: int = 10,
) -> str:
    """Create a push subscription (wrapped JSON body), optionally dead-lettering; return path."""
    path = subscription_path(project, name)
    request: dict[str, Any] = {
        "name": path,
        "topic": topic_path(project, topic),
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": ack_deadline_s,
        "retry_policy": {
            "minimum_backoff": datetime.timedelta(seconds=min_backoff_s),
            "maximum_backoff": datetime.timedelta(seconds=max_backoff_s),
        },
    }
    if dead_letter_topic is not None:
        request["dead_letter_policy"] = {
            "dead_letter_topic": topic_path(project, dead_letter_topic),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with pubsub_v1.SubscriberClient() as client:
        client.create_subscription(request=request, timeout=30)
    return path


def create_pull_subscription(project: str, name: str, topic: str) -> str:
    """Create a pull subscription and return its path."""
    path = subscription_path(project, name)
    with pubsub_v1.SubscriberClient() as client:
        client.create_subscription(
            request={"name": path, "topic": topic_path(project, topic)}, timeout=30
        )
    return path


@dataclass(frozen=True)
class Received:
    """One pulled (and acked) message."""

    data: bytes
    attributes: dict[str, str]
    message_id: str = ""
    delivery_attempt: int = 0


def pull_all(subscription_path: str, expect: int, timeout: float) -> list[Received]:
    """Pull and ack until at least expect messages arrived or timeout; return what arrived."""
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    with pubsub_v1.SubscriberClient() as client:
        while len(received) < expect:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                response = client.pull(
                    request={"subscription": subscription_path, "max_messages": 100},
                    timeout=max(0.5, min(remaining, 5.0)),
                )
            except api_exceptions.DeadlineExceeded:
                continue
            if not response.received_messages:
                time.sleep(0.1)
                continue
            received.extend(
                Received(
                    data=bytes(m.message.data),
                    attributes=dict(m.message.attributes),
                    message_id=m.message.message_id,
                    delivery_attempt=m.delivery_attempt,
                )
                for m in response.received_messages
            )
            client.acknowledge(
                request={
                    "subscription": subscription_path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                },
                timeout=30,
            )
    return received


def publish(project: str, topic: str, data: bytes, **attributes: str) -> str:
    """Publish one message, wait until it is accepted, and return its message id."""
    with pubsub_v1.PublisherClient() as client:
        future = client.publish(topic_path(project, topic), data, **attributes)
        return str(future.result(timeout=30))


class ServedFunction:
    """A functions-framework app served over real HTTP from a background thread."""

    def __init__(self, app: Any) -> None:
        """Serve app on a free 127.0.0.1 port until stop()."""
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="served-function", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.port}"

    def endpoint_for(self, topic: str) -> str:
        """A push endpoint whose path names the topic, so the CloudEvent's source names it too."""
        return f"{self.url}/{topic}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_function(
    source_path: str, target: str, signature_type: str = "cloudevent"
) -> ServedFunction:
    """Build the function's app with functions-framework and serve it over HTTP."""
    import functions_framework

    create_app: Callable[[str, str, str], Any] = functions_framework.create_app
    app = create_app(target, source_path, signature_type)
    return ServedFunction(app)
