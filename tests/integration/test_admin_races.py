"""Admin changes that race (issue 14): each wallet change is one atomic, audited step.

ledger.update_wallet (db/schema/75_access.sql) locks the wallet's row, checks, writes
and audits in one transaction; the Python check before it (common/adapters/
ledger_admin.py) is only a friendly first line. Here many threads change one wallet at
once through the service, as concurrent requests would. Every request also sets spend
limits no other request sets, so each one that succeeds is a real change, and its audit
row can be told apart: the audit rows must then be exactly the successful requests, each
with that request's whole change, chained (each row's `before` is the previous row's
`after`) up to the wallet as it ends. A change checked or audited outside the row's
lock breaks the chain; a closed wallet reopened shows as a row after the close.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pg8000.exceptions import DatabaseError

from common import bootstrap
from common.errors import Refused
from common.ledger.commands import UpdateWallet
from tests.support import CALLER, new_wallet, sql

THREADS = 12
WEEK, MONTH = 1_000_000, 2_000_000  # a request's week and month limits are its day limit plus these


def at_once(changes: dict[int, UpdateWallet], wallet: int) -> tuple[dict[int, UpdateWallet], list[str]]:
    """Send every change at once (THREADS at a time); the changes that succeeded by their
    number, and the codes of the refusals."""
    service, start = bootstrap.service(), threading.Barrier(THREADS)
    applied: dict[int, UpdateWallet] = {}
    refusals: list[str] = []

    def send(numbers: list[int]) -> None:
        start.wait()
        for number in numbers:
            try:
                service.update_wallet(CALLER, wallet, changes[number])
                applied[number] = changes[number]
            except Refused as refusal:
                refusals.append(refusal.code)

    numbers = sorted(changes)
    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(send, numbers[i::THREADS]) for i in range(THREADS)]:
            future.result()
    return applied, refusals


def limits(number: int) -> dict[str, int]:
    return {"day": number, "week": number + WEEK, "month": number + MONTH}


def audit_rows(stack, wallet: int) -> list[tuple[dict, dict]]:
    return [
        (before, after)
        for before, after in sql(
            stack,
            "SELECT before, after FROM ledger.audit_log WHERE target = :t AND action = 'wallet.update' ORDER BY id",
            t=f"wallet:{wallet}",
        )
    ]


def snapshot(stack, wallet: int) -> dict:
    return sql(stack, "SELECT ledger.wallet_snapshot(:w)", w=wallet)[0][0]


def assert_one_audit_row_per_change_chained(stack, wallet, initial, applied):
    rows = audit_rows(stack, wallet)
    assert len(rows) == len(applied)
    # each request's day limit is its own number: a row names the one request it audits
    assert sorted(after["spend_limits"]["day"] for _, after in rows) == sorted(applied)
    previous = initial
    for before, after in rows:
        assert before == previous
        change = applied[after["spend_limits"]["day"]]
        # that request's whole change applied to the row before, and nothing else: no
        # other request's limits or status mixed in, nothing it left alone changed
        assert after == {**before, "status": change.status or before["status"], "spend_limits": change.spend_limits}
        previous = after
    assert snapshot(stack, wallet) == previous


def test_a_closed_wallet_stays_closed_under_concurrent_reopening(stack):
    wallet = new_wallet(stack)  # empty: it may be closed
    initial = snapshot(stack, wallet)
    statuses = ["active", "frozen", "active", "closed", "frozen", "active", "active", "frozen"]
    changes = {n: UpdateWallet(status=statuses[n % len(statuses)], spend_limits=limits(n)) for n in range(1, 121)}

    applied, refusals = at_once(changes, wallet)

    assert set(refusals) <= {"wallet_closed"} and len(applied) + len(refusals) == len(changes)
    assert_one_audit_row_per_change_chained(stack, wallet, initial, applied)
    # The first close to run finds the wallet open (it is empty), so one close is always
    # applied; after it every request is refused, so it is the last change of all.
    statuses = [after["status"] for _, after in audit_rows(stack, wallet)]
    assert statuses.count("closed") == 1 and statuses[-1] == "closed"
    assert [change.status for change in applied.values()].count("closed") == 1
    assert snapshot(stack, wallet)["status"] == "closed"
    bootstrap.service().update_wallet(CALLER, wallet, UpdateWallet(status="closed"))
    assert snapshot(stack, wallet)["status"] == "closed"


def test_concurrent_spend_limit_changes_leave_one_requests_limits_each_audited_once(stack):
    wallet = new_wallet(stack, funded=10)
    initial = snapshot(stack, wallet)
    changes = {n: UpdateWallet(spend_limits=limits(n)) for n in range(1, 121)}

    applied, refusals = at_once(changes, wallet)

    assert refusals == [] and len(applied) == len(changes)
    assert_one_audit_row_per_change_chained(stack, wallet, initial, applied)
    final = snapshot(stack, wallet)["spend_limits"]
    assert final == limits(final["day"])


@pytest.mark.parametrize(
    ("status", "spend_limits"),
    [("active", None), ("frozen", None), (None, '{"day": 5}'), ("closed", '{"day": 5}')],
)
def test_the_database_refuses_any_change_to_a_closed_wallet_without_python(stack, status, spend_limits):
    wallet = new_wallet(stack)
    sql(stack, "SELECT ledger.update_wallet(:w, 'closed', NULL, NULL, NULL, NULL)", w=wallet)
    with pytest.raises(DatabaseError, match="wallet_closed"):
        sql(
            stack,
            "SELECT ledger.update_wallet(:w, :s, NULL, NULL, CAST(:l AS jsonb), NULL)",
            w=wallet,
            s=status,
            l=spend_limits,
        )
    assert snapshot(stack, wallet) == {"status": "closed", "credit_limit": 0, "spend_mode": None, "spend_limits": {}}
    sql(stack, "SELECT ledger.update_wallet(:w, 'closed', NULL, NULL, NULL, NULL)", w=wallet)  # saying it again: fine
