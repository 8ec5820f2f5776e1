"""Publishing ledger events to Pub/Sub, with a bounded wait.

One publisher client per instance (built in common/bootstrap.py), with message ordering
on: each wallet's events keep their order. After a failed publish Pub/Sub pauses that
ordering key until it is resumed, so a failure resumes it here; the event itself stays
pending in the outbox and is published again by the next relay round or sweep.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from common import events, timing

log = logging.getLogger("ledger.events")


class PubSubPublisher:
    def __init__(self, client: Any, topic_path: str, timeout_s: float) -> None:
        self._client = client
        self._topic = topic_path
        self._timeout_s = timeout_s

    def publish(self, batch: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, str]]]:
        """Publish every event and wait for them all, at most the timeout in total;
        returns (published transaction ids, [(id, error)]). One that is unconfirmed by
        then counts as failed and stays pending; should it still arrive, the next
        round sends it again and consumers drop the copy by its event id."""
        sent = []
        with timing.span("publish"):
            for event in batch:
                message = events.message(event)
                future = self._client.publish(
                    self._topic, message.data, ordering_key=message.ordering_key, **message.attributes
                )
                sent.append((event, message, future))
            published, failed = [], []
            deadline = time.monotonic() + self._timeout_s  # one bound for the whole batch
            for event, message, future in sent:
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                    published.append(event["transaction_id"])
                except Exception as error:  # noqa: BLE001 - any failure leaves the event pending
                    failed.append((event["transaction_id"], f"{type(error).__name__}: {error}"))
                    self._resume(message.ordering_key)
        return published, failed

    def _resume(self, ordering_key: str) -> None:
        try:
            self._client.resume_publish(self._topic, ordering_key)
        except RuntimeError:
            pass  # not paused: a timed-out wait, or another event of the key resumed it already
