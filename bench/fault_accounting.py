"""Accounting after `make faults`, with no I/O: every request, posting, balance, event and
ERP booking, set against each other, per fault.

- lost: a request answered 2xx whose posting is not under its key;
- duplicated: a key with more than one posting, or a request refused yet posted;
- wrong answer: a request refused that the ledger had to post, one posted that it had to
  refuse (more than its wallet holds), or one rejected (any other 4xx: the traffic's bug
  or an authorization that failed);
- unresolved: a request with no final answer after its retries;
- events missing: a ledger transaction whose event never reached the subscriber;
- ERP missing / doubled: a ledger transaction the ERP booked in no batch, or in two;
- time to recover: from the fault (and from its restore) to the send of the last attempt
  that still failed (the last moment a client saw it); a failed attempt belongs to the
  fault in effect when its failure showed.

Over the whole run: postings on the run's wallets under keys no request sent, and each
run wallet's balance against its opening balance plus what the answered requests moved,
which finds a second posting under any key at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.fault_traffic import POSTED, REFUSED, REJECTED, Request, classify


@dataclass(frozen=True)
class Window:
    """One fault: struck at `started`, the component back at `restored`; its phase holds
    the requests first sent from `opened` until the next phase opened."""

    name: str
    opened: float
    started: float
    restored: float


@dataclass(frozen=True)
class LedgerView:
    """What the ledger holds after the run, read as its owner."""

    postings_by_key: dict[str, list[int]]  # each request's key -> transaction ids under it
    phantom: list[int]  # postings on the run's wallets under keys no request sent
    transactions: list[int]  # every transaction posted since the run began, any tenant
    balances: dict[int, int]  # each run wallet's balance now


@dataclass
class Row:
    fault: str
    requests: int = 0
    in_flight: int = 0
    in_flight_settled_s: float | None = None  # the last of them to get its final answer, after the fault
    answers: Counter[str] = field(default_factory=Counter)
    failed_attempts: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_answers: int = 0
    unresolved: int = 0
    acked_before: int = 0
    acked_before_present: int = 0
    events_missing: int = 0
    erp_missing: int = 0
    erp_doubled: int = 0
    recovery_s: float | None = None
    recovery_after_restore_s: float | None = None

    COUNTS = (
        "requests",
        "in_flight",
        "retries",
        "lost",
        "duplicated",
        "wrong_answers",
        "unresolved",
        "acked_before",
        "acked_before_present",
        "events_missing",
        "erp_missing",
        "erp_doubled",
    )

    @property
    def clean(self) -> bool:
        failures = (self.lost, self.duplicated, self.wrong_answers, self.unresolved, self.events_missing)
        return (
            not any(failures)
            and not (self.erp_missing or self.erp_doubled)
            and (self.acked_before == self.acked_before_present)
        )


@dataclass(frozen=True)
class Accounting:
    rows: list[Row]
    total: Row
    phantom: list[int]
    balances_off: dict[int, tuple[int, int]]  # wallet -> (expected, found)

    @property
    def clean(self) -> bool:
        return self.total.clean and all(r.clean for r in self.rows) and not self.phantom and not self.balances_off


def window_of(windows: list[Window], at: float) -> Window:
    """The fault in effect at `at`: the latest that had struck by then (before the first: the first)."""
    current = windows[0]
    for window in windows:
        if at >= window.started:
            current = window
    return current


def expected_balances(requests: Iterable[Request], opening: dict[int, int]) -> dict[int, int]:
    """Each run wallet's opening balance plus what the posted requests moved: top-ups in,
    usages (over HTTP or as messages) out, transfers across, a void giving its usage back."""
    requests = list(requests)
    balances = dict(opening)
    usages = {
        r.transaction_id: r for r in requests if r.final == POSTED and r.action in ("usage", "message")
    }  # what a void names
    for request in requests:
        if request.final != POSTED:
            continue
        body = request.body
        if request.action == "topup":
            balances[body["wallet_id"]] += body["amount"]
        elif request.action in ("usage", "message"):
            balances[body["wallet_id"]] -= body["amount"]
        elif request.action == "transfer":
            balances[body["from_wallet_id"]] -= body["amount"]
            balances[body["to_wallet_id"]] += body["amount"]
        elif request.action == "void":
            voided = usages[body["transaction_id"]].body
            balances[voided["wallet_id"]] += voided["amount"]
    return balances


def account(
    requests: Iterable[Request],
    windows: list[Window],
    ledger: LedgerView,
    opening: dict[int, int],
    events_seen: Counter[int],
    erp_booked: dict[int, int],
) -> Accounting:
    requests = list(requests)
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
            if answered is not None:
                row.in_flight_settled_s = max(row.in_flight_settled_s or 0.0, answered - window.started)
        row.retries += request.retries
        row.answers[request.final or "unresolved"] += 1
        posted = ledger.postings_by_key.get(request.key, [])
        for transaction_id in posted:
            transaction_phase[transaction_id] = request.phase
        if request.final is None:
            row.unresolved += 1
        elif request.final == REJECTED or (request.final == REFUSED) != request.expect_refused:
            row.wrong_answers += 1
        if len(posted) > 1 or (request.final in (REFUSED, REJECTED) and posted):
            row.duplicated += 1  # refused, yet posted: money moved that the caller was told did not
        if request.final == POSTED:
            present = request.transaction_id in posted  # (more than one: counted as duplicated)
            if not present:
                row.lost += 1
            if answered is not None and answered < window.started:
                row.acked_before += 1
                row.acked_before_present += present
        for sent, failed_at, attempt in request.attempts:
            if classify(attempt) is None:
                # the fault in effect when the failure showed (one in flight when the fault
                # struck was sent before it); recovery runs to the last such attempt's send
                fault = window_of(windows, failed_at)
                failing = rows[fault.name]
                failing.failed_attempts[str(attempt.status) if attempt.status else attempt.code] += 1
                since = max(0.0, sent - fault.started)
                failing.recovery_s = max(failing.recovery_s or 0.0, since)
                failing.recovery_after_restore_s = max(failing.recovery_after_restore_s or 0.0, sent - fault.restored)
    first = windows[0].name
    for transaction_id in ledger.transactions:
        row = rows[transaction_phase.get(transaction_id, first)]
        if not events_seen.get(transaction_id):
            row.events_missing += 1
        # the run posts no migrations, the only postings the ERP chart leaves out
        booked = erp_booked.get(transaction_id, 0)
        if booked == 0:
            row.erp_missing += 1
        elif booked > 1:
            row.erp_doubled += 1
    total = Row("all")
    for row in rows.values():
        for name in Row.COUNTS:
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.answers.update(row.answers)
        total.failed_attempts.update(row.failed_attempts)
    expected = expected_balances(requests, opening)
    balances_off = {
        wallet: (balance, ledger.balances.get(wallet, 0))
        for wallet, balance in expected.items()
        if ledger.balances.get(wallet, 0) != balance
    }
    return Accounting(list(rows.values()), total, ledger.phantom, balances_off)


def table(rows: list[Row], total: Row) -> str:
    lines = [
        "| fault | requests | in flight at the fault (the last answered after) | answers | failed attempts (retried)"
        " | retries | acked before, present after | lost | duplicated | wrong answers | unresolved | events missing"
        " | ERP missing / doubled | time to recover: from the fault (after the restore) |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*rows, total]:
        answers = ", ".join(f"{name} {n:,}" for name, n in sorted(row.answers.items())) or "–"
        failed = ", ".join(f"{name} × {n:,}" for name, n in sorted(row.failed_attempts.items())) or "0"
        recovery = "–"
        if row.recovery_s is not None and row.fault != "all":
            recovery = f"{row.recovery_s:.1f} s ({max(0.0, row.recovery_after_restore_s or 0.0):.1f} s)"
        acked = f"{row.acked_before_present:,} / {row.acked_before:,}"
        in_flight = f"{row.in_flight:,}"
        if row.in_flight_settled_s is not None and row.fault != "all":
            in_flight += f" ({row.in_flight_settled_s:.1f} s)"
        name = f"**{row.fault}**" if row.fault == "all" else row.fault
        lines.append(
            f"| {name} | {row.requests:,} | {in_flight} | {answers} | {failed} | {row.retries:,} | {acked}"
            f" | {row.lost} | {row.duplicated} | {row.wrong_answers} | {row.unresolved} | {row.events_missing} |"
            f" {row.erp_missing} / {row.erp_doubled} | {recovery} |"
        )
    return "\n".join(lines)
