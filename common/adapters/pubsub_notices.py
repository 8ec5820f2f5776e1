"""Notices to the notifications topic (a low-balance rule's, a declined auto top-up's),
each confirmed by Pub/Sub within the publish timeout or raised as DependencyUnavailable,
so the delivery that wanted it sent is retried."""

from __future__ import annotations

import json
from typing import Any

from common.errors import DependencyUnavailable


class PubSubNotices:
    def __init__(self, client: Any, topic_path: str, timeout_s: float) -> None:
        self._client = client
        self._topic = topic_path
        self._timeout_s = timeout_s

    def send(self, notice: dict[str, Any], attributes: dict[str, str]) -> None:
        data = json.dumps(notice, sort_keys=True, separators=(",", ":")).encode()
        try:
            self._client.publish(self._topic, data, **attributes).result(timeout=self._timeout_s)
        except Exception as error:  # noqa: BLE001 - any failure: not confirmed, send it again later
            raise DependencyUnavailable(f"the notice was not published: {type(error).__name__}") from error
