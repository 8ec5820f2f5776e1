"""Exactly-once request handling around an idempotency record store.

The protocol, independent of where records live (Firestore in production, a dict in
unit tests), with Postgres as the system of record for what was posted:

1. Claim the key: create its record (`in_progress`, the request's fingerprint, this
   attempt's claim mark, a lease) only if absent. This is the only write a successful
   request makes: its outcome is the posting itself, which Postgres keeps under the
   same key, for good.
2. The claimant runs the action. A business refusal (404, 422) has no posting to show
   for it, so it is stored on the record (a second write) and stays refused. Invalid
   requests, conflicts and dependency failures release the record: a retry runs afresh.
3. Anyone else with the same key: a different fingerprint is refused
   (`idempotency_key_reused`); a stored refusal is replayed; a claimed record is looked
   up in Postgres (`committed`), and a committed posting is replayed from there. A claim
   with nothing committed yet is awaited up to a bound, then answered 409
   `request_in_progress`; once its lease runs out (its owner died before posting), the
   follower takes the record over and runs the action again, and Postgres' unique key
   on the idempotency key still lets only one posting ever exist under it.

Every write after the create is conditional on the record's version (Firestore's
update time) as this attempt last saw or wrote it, so no attempt acts on a record
that changed under it: of two followers taking over one expired lease only one wins
and runs the action (the other follows the winner); an expired record is deleted only
if it is still the one that was read, never one a faster caller just created; and a
refusal is stored, and a claim released, only while the record is still this
attempt's. A refusal that can't be stored is not answered as a refusal (a retry could
then succeed where the caller was told it failed): the key is released and the answer
is 503, so the caller retries with the same key.

So a function that dies after its commit leaves a claim that the next copy resolves
at once from Postgres, and a request costs one Firestore write instead of two.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias

from common.errors import DependencyUnavailable, InProgress, InvalidRequest, LedgerError, Refused

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
STORED_ERROR_STATUSES = frozenset({404, 422})
LEDGER_CHECK_S = 0.25  # how often a waiting copy asks Postgres whether the key has posted

# A record's version as its store knows it (Firestore's update time, a counter in
# memory): opaque here, only handed back as the precondition of the next write.
Version: TypeAlias = object


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Stored:
    record: dict[str, Any]
    version: Version


class RecordStore(Protocol):
    """Conditional writes: each takes the version the writer last saw and does nothing
    (None or False) when the record has changed or gone since."""

    def create(self, doc_id: str, record: dict[str, Any]) -> Version | None:
        """Create the record if absent: its version, or None when it already exists."""

    def get(self, doc_id: str) -> Stored | None: ...

    def takeover(self, doc_id: str, record: dict[str, Any], expected: Version) -> Version | None:
        """Replace the record's fields with `record` if it is still at `expected`: the
        new version, or None."""

    def complete(self, doc_id: str, fields: dict[str, Any], expected: Version) -> bool:
        """Add `fields` to the record if it is still at `expected`."""

    def release(self, doc_id: str, expected: Version) -> bool:
        """Delete the record if it is still at `expected`."""


def fingerprint(action: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"action": action, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_id(scope: str, key: str) -> str:
    # A newline can't appear in a key (printable ASCII only), so no two (scope, key)
    # pairs share an id; a key of the empty scope keeps the id it had before scopes.
    return hashlib.sha256((f"{scope}\n{key}" if scope else key).encode()).hexdigest()


# Keys the ledger derives for postings no caller names: automation's (common/automation.py),
# bulk intake's by usage id (common/intake.py), bulk migrations' (common/migration.py), and
# lot expiry's (reserved by the database too, db/schema/70_posting.sql). They share the
# tenant's namespace with callers' keys, so a caller sending one first could take the
# posting's place: the edges refuse them.
RESERVED_KEY_PREFIXES = ("auto-topup:", "auto-allocate:", "usage-id:", "lot-expiry:", "migration:")


def refuse_reserved_key(key: str | None) -> None:
    """For the edges (HTTP, messages): a caller's key may not start with a reserved
    prefix. LedgerService itself takes them, for the internal callers that derive them."""
    if key is not None and key.startswith(RESERVED_KEY_PREFIXES):
        raise InvalidRequest(
            f"Idempotency-Key may not start with {', '.join(RESERVED_KEY_PREFIXES)}: the ledger reserves them",
            code="idempotency_key_invalid",
        )


def validate_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise InvalidRequest("money-moving requests need an Idempotency-Key header", code="idempotency_key_missing")
    if len(key) > 255 or not key.isascii() or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1-255 printable ASCII characters", code="idempotency_key_invalid")
    return key


class Idempotency:
    def __init__(
        self,
        store: RecordStore,
        *,
        ttl_s: float,
        wait_s: float,
        lease_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._ttl = timedelta(seconds=ttl_s)
        self._wait_s = wait_s
        self._lease = timedelta(seconds=lease_s)
        self._clock = clock
        self._sleep = sleep

    def run(
        self,
        key: str,
        request_fingerprint: str,
        action: Callable[[], Outcome],
        committed: Callable[[], Outcome | None],
        scope: str = "",
    ) -> Outcome:
        """Run `action` at most once per key within `scope` (the caller's tenant: two
        tenants' equal key strings are two keys); `committed` reads what the system of
        record holds under the key (a replayed outcome), or None when nothing was posted."""
        doc_id = record_id(scope, key)
        record = {
            "tenant": scope,
            "key": key,
            # This attempt's own mark: should a create or takeover succeed but its answer
            # be lost (a retried call then finds the record), the claim is still ours.
            "claim": secrets.token_hex(16),
            "state": IN_PROGRESS,
            "fingerprint": request_fingerprint,
        }
        version = self._store.create(doc_id, self._claim(record))
        if version is not None:
            return self._execute(doc_id, version, action)
        return self._follow(doc_id, record, request_fingerprint, action, committed)

    def _claim(self, record: dict[str, Any]) -> dict[str, Any]:
        """The claim as written now: a fresh lease and time to live."""
        now = self._clock()
        return {**record, "created_at": now, "lease_until": now + self._lease, "expire_at": now + self._ttl}

    def _follow(
        self,
        doc_id: str,
        record: dict[str, Any],
        request_fingerprint: str,
        action: Callable[[], Outcome],
        committed: Callable[[], Outcome | None],
    ) -> Outcome:
        deadline = time.monotonic() + self._wait_s
        delay = 0.01
        next_ledger_check = 0.0  # Postgres is asked at once, then every LEDGER_CHECK_S
        while True:
            stored = self._store.get(doc_id)
            now = self._clock()
            if stored is None:
                version = self._store.create(doc_id, self._claim(record))  # released meanwhile: the key is free
                if version is not None:
                    return self._execute(doc_id, version, action)
                continue
            existing = stored.record
            if existing["expire_at"] <= now:
                # Past its TTL (Firestore deletes expired records lazily): free the key and
                # claim it afresh. Only the record read is deleted: one that a faster caller
                # has just created in its place is that caller's claim.
                self._store.release(doc_id, stored.version)
                continue
            if existing.get("claim") == record["claim"]:
                return self._execute(doc_id, stored.version, action)  # our own write, its answer lost
            if existing["fingerprint"] != request_fingerprint:
                raise Refused("this Idempotency-Key was used with a different request", code="idempotency_key_reused")
            if time.monotonic() >= next_ledger_check or existing["state"] == COMPLETED:
                # A posting under the key is the truth, even over a stored refusal (a slow
                # owner's refusal may land after another copy posted).
                posted = committed()
                if posted is not None:
                    return posted
                next_ledger_check = time.monotonic() + LEDGER_CHECK_S
            if existing["state"] == COMPLETED:
                return Outcome(existing["status"], json.loads(existing["body"]), replayed=True)
            if existing["lease_until"] <= now:
                # The owner died before posting: take the record over, if no one else did
                # since it was read; a follower that loses follows the winner's claim.
                version = self._store.takeover(doc_id, self._claim(record), stored.version)
                if version is not None:
                    return self._execute(doc_id, version, action)
                continue
            if time.monotonic() >= deadline:
                raise InProgress("a request with this Idempotency-Key is still in progress; retry later")
            self._sleep(delay)
            delay = min(delay * 2, 0.1)

    def _execute(self, doc_id: str, version: Version, action: Callable[[], Outcome]) -> Outcome:
        try:
            outcome = action()
        except LedgerError as error:
            if error.status in STORED_ERROR_STATUSES:
                self._keep_refusal(doc_id, version, Outcome(error.status, error.body()))
            else:
                self._release(doc_id, version)
            raise
        except BaseException:
            self._release(doc_id, version)
            raise
        return outcome  # the posting is the stored outcome: Postgres holds it under the key

    def _keep_refusal(self, doc_id: str, version: Version, outcome: Outcome) -> None:
        fields = {
            "state": COMPLETED,
            "status": outcome.status,
            "body": json.dumps(outcome.body),
            "completed_at": self._clock(),
        }
        try:
            kept = self._store.complete(doc_id, fields, version)
        except LedgerError:
            kept = False
        if not kept:
            # Firestore failed, or the record is no longer ours (our lease ran out and a
            # follower took over, or it expired): a refusal that isn't kept must not be
            # the answer, or a retry could succeed where the caller was told it failed.
            self._release(doc_id, version)
            raise DependencyUnavailable(
                "the refusal could not be kept with its Idempotency-Key; retry with the same key",
                details={"service": "firestore"},
            )

    def _release(self, doc_id: str, version: Version) -> None:
        try:
            self._store.release(doc_id, version)
        except LedgerError:
            pass  # the lease expires on its own; a retry then runs afresh
