"""Idempotency records in Firestore: one document per key (named by the key's SHA-256,
since keys may hold characters a document id can't).

`create()` is Firestore's create-if-absent. Every call has a bounded retry and deadline
(common/adapters/firestore_rest.py) so an unreachable Firestore answers 503 within
seconds instead of hanging a request. `expire_at` drives a Firestore TTL policy
(infra/terraform); expiry is also compared in code, because TTL deletion lags by up to
a day and the emulator does not enforce it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from common import timing
from common.adapters.firestore_rest import FirestoreDocuments, FirestoreError
from common.errors import DependencyUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class FirestoreRecordStore:
    def __init__(self, documents: FirestoreDocuments, collection: str) -> None:
        self._documents = documents
        self._collection = collection

    def _call(self, call: Callable[..., T], doc_id: str, *args: Any) -> T:
        try:
            with timing.span("firestore"):
                return call(f"{self._collection}/{doc_id}", *args)
        except FirestoreError as error:
            # Unreachable, overloaded, or refusing our credentials: either way the
            # request can't be made exactly-once now, so it is answered 503 and nothing
            # is posted.
            log.warning("firestore call failed", extra={"status": error.status, "reason": error.reason})
            raise DependencyUnavailable(
                "the idempotency store is unreachable", details={"service": "firestore"}
            ) from error

    def create(self, doc_id: str, record: dict[str, Any]) -> bool:
        return self._call(self._documents.create, doc_id, record)

    def get(self, doc_id: str) -> dict[str, Any] | None:
        return self._call(self._documents.get, doc_id)

    def complete(self, doc_id: str, fields: dict[str, Any]) -> None:
        # A merge, not an update: completing must not fail because the record expired
        # and was deleted in the meantime.
        self._call(self._documents.merge, doc_id, fields)

    def release(self, doc_id: str) -> None:
        self._call(self._documents.delete, doc_id)
