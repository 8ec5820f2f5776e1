"""Publishing the actions function's messages (results, dead letters, replays), each
with a bounded wait: a message not confirmed in time is a DependencyUnavailable, so the
pushed message it answers is delivered again rather than acknowledged unanswered."""

from __future__ import annotations

from typing import Any

from common import timing
from common.errors import DependencyUnavailable


class MessagePublisher:
    def __init__(self, client: Any, project: str, timeout_s: float) -> None:
        self._client = client
        self._project = project
        self._timeout_s = timeout_s

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Publish and wait for Pub/Sub's confirmation; returns the message id. `topic` is
        a name in this project or a full `projects/P/topics/T`."""
        path = topic if topic.startswith("projects/") else self._client.topic_path(self._project, topic)
        try:
            with timing.span("publish"):
                return str(self._client.publish(path, data, **attributes).result(timeout=self._timeout_s))
        except Exception as error:  # noqa: BLE001 - whatever failed, the message was not confirmed
            raise DependencyUnavailable(
                f"could not publish to {topic}: {type(error).__name__}", details={"service": "pubsub"}
            ) from error
