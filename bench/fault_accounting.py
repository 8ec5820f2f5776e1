"""Accounting after `make faults`, with no I/O: every request, every posting, every event
and every ERP booking, set against each other, per fault.

- lost: a request answered 2xx whose posting is not in the ledger (or is another one);
- duplicated: a request with more than one posting under its key;
- unresolved: a request with no final answer after its retries;
- phantom: a posting of the traffic's tenant under a key no request sent;
- events missing: a ledger transaction no event of which reached Pub/Sub's subscriber;
  apart from them, those the Pub/Sub emulator had acknowledged to the relay and then
  lost when it was killed (it keeps messages in memory only; Google Cloud's Pub/Sub
  stores an acknowledged publish durably before it answers);
- ERP missing / doubled: a ledger transaction the ERP booked in no batch, or in two;
- time to recover: from the fault to the send of the last attempt that failed (the
  last moment a client still saw it), whatever phase the attempt's request began in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.fault_traffic import POSTED, REFUSED, REJECTED, Request, classify

# An event the emulator acknowledged this long before it was killed would have reached a
# subscriber pulling all the time: missing, it is the ledger's, not the emulator's.
EMULATOR_MEMORY_S = 2.0


@dataclass(frozen=True)
class Window:
    """One fault: injected at `started`, the component back at `restored`; its phase
    holds the requests first sent from `opened` until the next phase opened."""

    name: str
    opened: float
    started: float
    restored: float


@dataclass(frozen=True)
class LedgerView:
    """What the ledger holds after the run, read as its owner."""

    postings_by_key: dict[str, list[int]]  # each request's key -> transaction ids under it
    phantom: list[int]  # the tenant's postings in the run under keys no request sent
    transactions: list[int]  # every transaction the run's window posted, any tenant
    erp_transactions: list[int]  # those of them the ERP export must book (not migrations)
    published_at: dict[int, float]  # each transaction's event: when the outbox marked it published (monotonic)


@dataclass
class Row:
    fault: str
    requests: int = 0
    in_flight: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    failed_attempts: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    lost: int = 0
    duplicated: int = 0
    unresolved: int = 0
    acked_before: int = 0
    acked_before_present: int = 0
    events_missing: int = 0
    events_lost_in_emulator: int = 0
    erp_missing: int = 0
    erp_doubled: int = 0
    recovery_s: float | None = None

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unresolved or self.events_missing or self.erp_missing) and (
            not self.erp_doubled and self.acked_before == self.acked_before_present
        )


def lost_in_emulator(published_at: float | None, emulator_killed: Sequence[float]) -> bool:
    """Whether an event the subscriber never got was taken by the Pub/Sub emulator just
    before it was killed (marked published then), and so went down with its memory."""
    return published_at is not None and any(
        published_at <= killed and killed - published_at < EMULATOR_MEMORY_S for killed in emulator_killed
    )


def phase_of(windows: list[Window], at: float) -> str:
    """The fault whose phase holds time `at` (before the first: the first's)."""
    current = windows[0].name
    for window in windows:
        if at >= window.opened:
            current = window.name
    return current


def account(
    requests: Iterable[Request],
    windows: list[Window],
    ledger: LedgerView,
    events_seen: Counter[int],
    erp_booked: dict[int, int],
    emulator_killed: Sequence[float] = (),
) -> tuple[list[Row], Row, list[int]]:
    """(a row per fault, the totals, the phantom postings). `emulator_killed`: when the
    Pub/Sub emulator was killed; an event missing that the outbox marked published
    before one of those moments went down with the emulator's memory."""
    rows = {w.name: Row(w.name) for w in windows}
    by_name = {w.name: w for w in windows}
    transaction_phase: dict[int, str] = {}
    for request in requests:
        row = rows[request.phase]
        window = by_name[request.phase]
        row.requests += 1
        answered = request.answered_at if request.final else None
        if request.first_sent < window.started and (answered is None or answered > window.started):
            row.in_flight += 1
        row.retries += request.retries
        row.answers[request.final or "unresolved"] += 1
        posted = ledger.postings_by_key.get(request.key, [])
        for transaction_id in posted:
            transaction_phase[transaction_id] = request.phase
        if request.final is None:
            row.unresolved += 1
        if len(posted) > 1:
            row.duplicated += 1
        if request.final == POSTED:
            present = request.transaction_id in posted  # (more than one: counted as duplicated)
            if not present:
                row.lost += 1
            if answered is not None and answered < window.started:
                row.acked_before += 1
                row.acked_before_present += present
        elif request.final in (REFUSED, REJECTED) and posted:
            row.duplicated += 1  # refused, yet posted: money moved that the caller was told did not
        for sent, _answered, attempt in request.attempts:
            if classify(attempt) is None:
                failing = rows[phase_of(windows, sent)]
                failing.failed_attempts[str(attempt.status) if attempt.status else attempt.code] += 1
                started = by_name[failing.fault].started
                if sent >= started:  # the fault still showed when this attempt was sent
                    failing.recovery_s = max(failing.recovery_s or 0.0, sent - started)
    first = windows[0].name
    for transaction_id in ledger.transactions:
        if not events_seen.get(transaction_id):
            row = rows[transaction_phase.get(transaction_id, first)]
            if lost_in_emulator(ledger.published_at.get(transaction_id), emulator_killed):
                row.events_lost_in_emulator += 1
            else:
                row.events_missing += 1
    for transaction_id in ledger.erp_transactions:
        booked = erp_booked.get(transaction_id, 0)
        row = rows[transaction_phase.get(transaction_id, first)]
        if booked == 0:
            row.erp_missing += 1
        elif booked > 1:
            row.erp_doubled += 1
    total = Row("all")
    for row in rows.values():
        for name in ("requests", "in_flight", "retries", "lost", "duplicated", "unresolved", "acked_before"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.acked_before_present += row.acked_before_present
        total.events_missing += row.events_missing
        total.events_lost_in_emulator += row.events_lost_in_emulator
        total.erp_missing += row.erp_missing
        total.erp_doubled += row.erp_doubled
        total.answers.update(row.answers)
        total.failed_attempts.update(row.failed_attempts)
    return list(rows.values()), total, ledger.phantom


def table(rows: list[Row], total: Row) -> str:
    lines = [
        "| fault | requests | in flight at the fault | answers | failed attempts (retried) | retries"
        " | acked before, present after | lost | duplicated | unresolved | events missing | ERP missing / doubled"
        " | time to recover |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*rows, total]:
        answers = ", ".join(f"{name} {n:,}" for name, n in sorted(row.answers.items())) or "–"
        failed = ", ".join(f"{name} × {n:,}" for name, n in sorted(row.failed_attempts.items())) or "0"
        recovery = "–" if row.recovery_s is None or row.fault == "all" else f"{row.recovery_s:.1f} s"
        acked = f"{row.acked_before_present:,} / {row.acked_before:,}"
        name = f"**{row.fault}**" if row.fault == "all" else row.fault
        events = f"{row.events_missing}" + (
            f" (+{row.events_lost_in_emulator} lost in the killed emulator)" if row.events_lost_in_emulator else ""
        )
        lines.append(
            f"| {name} | {row.requests:,} | {row.in_flight:,} | {answers} | {failed} | {row.retries:,} | {acked}"
            f" | {row.lost} | {row.duplicated} | {row.unresolved} | {events} |"
            f" {row.erp_missing} / {row.erp_doubled} | {recovery} |"
        )
    return "\n".join(lines)
