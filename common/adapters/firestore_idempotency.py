"""Idempotency records in Firestore through google-cloud-firestore, the design's
client: one document per key (named by the key's SHA-256, since keys may hold
characters a document id can't).

`create()` is Firestore's create-if-absent. Every call has a bounded retry and deadline
(LEDGER_FIRESTORE_TIMEOUT_S) so an unreachable Firestore answers 503 within seconds
instead of hanging a request. `expire_at` drives a Firestore TTL policy
(infra/terraform); expiry is also compared in code, because TTL deletion lags by up to
a day and the emulator does not enforce it. The client is imported by
common/bootstrap.py with the first request that needs it: reads never load it.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore

from common import timing
from common.errors import DependencyUnavailable

log = logging.getLogger(__name__)
# What a create-if-absent that lost the race raises (the emulator answers 409 too)
ALREADY_THERE = (gexc.AlreadyExists, gexc.Conflict)


class FirestoreRecordStore:
    def __init__(self, client: firestore.Client, collection: str, timeout_s: float) -> None:
        self._collection = client.collection(collection)
        self._timeout = timeout_s
        self._retry = Retry(
            initial=0.05,
            maximum=0.5,
            multiplier=2.0,
            timeout=timeout_s,
            predicate=lambda error: isinstance(error, (gexc.ServiceUnavailable, gexc.Aborted)),
        )

    def _call(self, call: Any, *args: Any) -> Any:
        try:
            with timing.span("firestore"):
                return call(*args, retry=self._retry, timeout=self._timeout)
        except ALREADY_THERE:
            raise
        except (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError) as error:
            # Unreachable, overloaded, or refusing our credentials: either way the
            # request can't be made exactly-once now, so it is answered 503 and nothing
            # is posted.
            log.warning("firestore call failed", extra={"error": type(error).__name__})
            raise DependencyUnavailable(
                "the idempotency store is unreachable", details={"service": "firestore"}
            ) from error

    def create(self, doc_id: str, record: dict[str, Any]) -> bool:
        try:
            self._call(self._collection.document(doc_id).create, record)
            return True
        except ALREADY_THERE:
            return False

    def get(self, doc_id: str) -> dict[str, Any] | None:
        snapshot = self._call(self._collection.document(doc_id).get)
        return snapshot.to_dict() if snapshot.exists else None

    def complete(self, doc_id: str, fields: dict[str, Any]) -> None:
        # A merge, not an update: completing must not fail because the record expired
        # and was deleted in the meantime.
        self._call(self._collection.document(doc_id).set, fields, True)

    def release(self, doc_id: str) -> None:
        self._call(self._collection.document(doc_id).delete)
