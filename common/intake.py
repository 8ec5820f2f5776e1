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
