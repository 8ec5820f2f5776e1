"""Bulk usage intake: the outcome of each record of a batch (pure, no I/O).

A metering service publishes usage in batches (docs/messages.md). Each record is one
usage, idempotent by its `usage_id` within the tenant, and gets an outcome of its own:
one bad record never blocks the others of its batch.

Statuses:
- `posted`: posted now; `replayed`: posted before (this batch sent again, or the same
  usage over HTTP): the first posting is the answer;
- `refused`: a business refusal that can never succeed as sent (insufficient funds, a
  frozen wallet, a usage id posted with other content), final;
- `invalid`: the record does not parse as a usage, final;
- `forbidden`: the publisher may not post usage there (no usage scope, or the wallet is
  outside its boundary), final;
- `retry`: a transient failure (a dependency down, contention): the message is
  delivered again, and what did post replays then.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

FINAL = frozenset({"posted", "replayed", "refused", "invalid", "forbidden"})
STATUSES = FINAL | {"retry"}


@dataclass(frozen=True)
class RecordOutcome:
    index: int  # the record's position in its batch
    usage_id: str | None  # None when the record has no readable one
    status: str
    code: str | None = None  # the error code of a refusal, an invalid record or a retry
    message: str | None = None
    details: Any = None
    transaction_id: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown record status {self.status!r}")

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "usage_id": self.usage_id, "status": self.status}
        if self.transaction_id is not None:
            out["transaction_id"] = self.transaction_id
        if self.code is not None:
            out["error"] = {"code": self.code, "message": self.message, "details": self.details}
        return out


@dataclass(frozen=True)
class IntakeResult:
    """A batch's outcomes, in record order, and how many calls to the database posted
    them (the benchmark's postings per call)."""

    outcomes: list[RecordOutcome]
    db_calls: int = 0

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for outcome in self.outcomes:
            counted[outcome.status] = counted.get(outcome.status, 0) + 1
        return counted

    @property
    def final(self) -> bool:
        return all(outcome.final for outcome in self.outcomes)


def usage_key(usage_id: str) -> str:
    """The idempotency key a record posts under, derived from its usage id (a usage id
    may hold characters a key may not, and may be up to 200 long)."""
    return "usage-id:" + hashlib.sha256(usage_id.encode()).hexdigest()


@dataclass(frozen=True)
class Decided:
    """What the ledger decided before about a usage id of a tenant: its posting
    (`transaction_id`), else the first refusal kept for it (`code`, `message`,
    `details`), and the request hash either was decided for."""

    request_hash: str
    transaction_id: int | None = None
    code: str | None = None
    message: str | None = None
    details: Any = None


def decided_outcome(index: int, usage_id: str, request_hash: str, decided: Decided) -> RecordOutcome:
    """A record's outcome from what was decided before about its usage id: the posting
    for the same usage (as HTTP replays it), a refusal naming it for other content, or
    the first refusal, whatever the content (the id was decided: a new try is a new id)."""
    if decided.transaction_id is None:
        return RecordOutcome(index, usage_id, "refused", decided.code, decided.message, decided.details)
    if decided.request_hash == request_hash:
        return RecordOutcome(index, usage_id, "replayed", transaction_id=decided.transaction_id)
    return already_posted(index, usage_id, decided.transaction_id)


def already_posted(index: int, usage_id: str | None, transaction_id: int | None) -> RecordOutcome:
    """The database's own refusal for a usage id posted with other content."""
    return RecordOutcome(
        index,
        usage_id,
        "refused",
        "usage_id_already_posted",
        "usage id already posted",
        {"transaction_id": transaction_id},
    )


def repeated_outcome(index: int, first: RecordOutcome, same_request: bool) -> RecordOutcome:
    """A record repeating an earlier record's usage id in its batch: the first one
    counts, this one gets its outcome. A posting is a replay for the same usage and
    names the posting for other content, as any later copy of the id would get."""
    if first.status in ("posted", "replayed"):
        if same_request:
            return RecordOutcome(index, first.usage_id, "replayed", transaction_id=first.transaction_id)
        return already_posted(index, first.usage_id, first.transaction_id)
    return RecordOutcome(index, first.usage_id, first.status, first.code, first.message, first.details)


def problems(errors: list[Any]) -> list[dict[str, Any]]:
    """A validation error's problems, as HTTP's 400 validation_failed lists them."""
    return [{"field": ".".join(map(str, p["loc"])) or None, "message": p["msg"], "type": p["type"]} for p in errors]
