"""Idempotency records in Firestore: one document per key (named by the key's SHA-256,
since keys may hold characters a document id can't).

`create()` is Firestore's create-if-absent. Every call has a bounded retry and deadline
so an unreachable Firestore answers 503 within seconds instead of hanging a request.
`expire_at` drives a Firestore TTL policy (infra/terraform); expiry is also compared in
code, because TTL deletion lags by up to a day and the emulator does not enforce it.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import firestore

from common import timing
from common.errors import DependencyUnavailable

UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.RetryError,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.ResourceExhausted,
    gexc.Aborted,
)


class FirestoreRecordStore:
    def __init__(self, client: firestore.Client, collection: str, timeout_s: float) -> None:
        self._collection = client.collection(collection)
        self._timeout = timeout_s
        self._retry = Retry(
            initial=0.05,
            maximum=0.5,
            multiplier=2.0,
            timeout=timeout_s,
            predicate=lambda e: isinstance(e, (gexc.ServiceUnavailable, gexc.Aborted)),
        )

    def _call(self, fn, *args: Any) -> Any:
        try:
            with timing.span("firestore"):
                return fn(*args, retry=self._retry, timeout=self._timeout)
        except UNAVAILABLE as error:
            raise DependencyUnavailable(
                "the idempotency store is unreachable", details={"service": "firestore"}
            ) from error

    def create(self, doc_id: str, record: dict[str, Any]) -> bool:
        try:
            self._call(self._collection.document(doc_id).create, record)
            return True
        except gexc.AlreadyExists:
            return False
        except gexc.Conflict:  # the emulator answers a racing create with 409 as well
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
