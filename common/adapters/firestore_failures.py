"""Why a pushed message keeps failing: one Firestore document per message (its id:
common/messages.failure_id), with its last error, how many deliveries failed, and
when. Best effort, for the operator's dead-letter command: the redelivery does not
depend on it, and Firestore being the dependency that is down is a reason it can't be
written. Each record expires with the dead letter it explains (KEPT_S, the dead-letter
subscriptions' retention: infra/terraform/pubsub.tf): Firestore's TTL policy on
expire_at deletes it (infra/terraform/firestore.tf)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("ledger.messages")
KEPT_S = 31 * 86400


class FailureLog:
    def __init__(self, client: Any, collection: str, timeout_s: float) -> None:
        self._client = client
        self._collection = collection
        self._timeout_s = timeout_s

    def record(self, failure_id: str, error: str) -> None:
        from google.cloud import firestore

        expire_at = datetime.now(UTC) + timedelta(seconds=KEPT_S)
        try:
            self._client.collection(self._collection).document(failure_id).set(
                {
                    "last_error": error[:1000],
                    "count": firestore.Increment(1),
                    "at": firestore.SERVER_TIMESTAMP,
                    "expire_at": expire_at,
                },
                merge=True,
                timeout=self._timeout_s,
                retry=None,
            )
        except Exception as failure:  # noqa: BLE001 - best effort: the message is redelivered anyway
            log.warning("could not record a message's failure", extra={"error": type(failure).__name__})

    def get(self, failure_id: str) -> dict[str, Any] | None:
        snapshot = self._client.collection(self._collection).document(failure_id).get(timeout=self._timeout_s)
        return snapshot.to_dict() if snapshot.exists else None
