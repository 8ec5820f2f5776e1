"""Idempotency records in Firestore through google-cloud-firestore, the design's
client: one document per key (named by the key's SHA-256, since keys may hold
characters a document id can't).

`create()` is Firestore's create-if-absent; every later write carries a precondition
on the document's update time as the caller last read or wrote it (Firestore answers
FAILED_PRECONDITION, the emulator too, when the document changed or is gone), so a
takeover, a stored refusal or a release never lands on someone else's newer record.
A record's version is that update time. Every call has a bounded retry and deadline
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
from common.idempotency import Stored, Version

log = logging.getLogger(__name__)
# What a create-if-absent that lost the race raises (the emulator answers 409 too)
ALREADY_THERE = (gexc.AlreadyExists, gexc.Conflict)
# What a write whose update-time precondition failed raises: FAILED_PRECONDITION, for a
# changed and for a missing document alike (NOT_FOUND kept in case a backend says so).
CHANGED_OR_GONE = (gexc.FailedPrecondition, gexc.NotFound)


class FirestoreRecordStore:
    def __init__(self, client: firestore.Client, collection: str, timeout_s: float) -> None:
        self._client = client
        self._collection = client.collection(collection)
        self._timeout = timeout_s
        # A retried conditional write whose first attempt did land meets its own new
        # update time and reports a loss: the protocol's claim mark and 503 cover that.
        self._retry = Retry(
            initial=0.05,
            maximum=0.5,
            multiplier=2.0,
            timeout=timeout_s,
            predicate=lambda error: isinstance(error, (gexc.ServiceUnavailable, gexc.Aborted)),
        )

    def _call(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with timing.span("firestore"):
                return call(*args, **kwargs, retry=self._retry, timeout=self._timeout)
        except ALREADY_THERE + CHANGED_OR_GONE:
            raise
        except (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError) as error:
            # Unreachable, overloaded, or refusing our credentials: either way the
            # request can't be made exactly-once now, so it is answered 503 and nothing
            # is posted.
            log.warning("firestore call failed", extra={"error": type(error).__name__})
            raise DependencyUnavailable(
                "the idempotency store is unreachable", details={"service": "firestore"}
            ) from error

    def _unchanged_since(self, version: Version) -> Any:
        return self._client.write_option(last_update_time=version)

    def create(self, doc_id: str, record: dict[str, Any]) -> Version | None:
        try:
            return self._call(self._collection.document(doc_id).create, record).update_time
        except ALREADY_THERE:
            return None

    def get(self, doc_id: str) -> Stored | None:
        snapshot = self._call(self._collection.document(doc_id).get)
        return Stored(snapshot.to_dict(), snapshot.update_time) if snapshot.exists else None

    def takeover(self, doc_id: str, record: dict[str, Any], expected: Version) -> Version | None:
        # An update of every field the claim has: a claim that is taken over (in
        # progress) holds no field that the new claim doesn't name.
        return self._update(doc_id, record, expected)

    def complete(self, doc_id: str, fields: dict[str, Any], expected: Version) -> bool:
        return self._update(doc_id, fields, expected) is not None

    def release(self, doc_id: str, expected: Version) -> bool:
        try:
            self._call(self._collection.document(doc_id).delete, option=self._unchanged_since(expected))
            return True
        except CHANGED_OR_GONE:
            return False

    def _update(self, doc_id: str, fields: dict[str, Any], expected: Version) -> Version | None:
        # Field names are plain (no dots), so each key is the top-level field of its name.
        try:
            written = self._call(
                self._collection.document(doc_id).update, fields, option=self._unchanged_since(expected)
            )
        except CHANGED_OR_GONE:
            return None
        return written.update_time
