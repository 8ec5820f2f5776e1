"""The daily reconciliation through its running function (functions/ledger_reconcile),
ticked as Pub/Sub pushes Cloud Scheduler's tick: a tick checks what is new and moves the
checkpoint; a ledger tampered around its guards is logged at ERROR by invariant and
the checkpoint stays; with the database down the tick answers 503 (Pub/Sub delivers it
again) and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime

from emulators.stack import wait_for
from tests.e2e.test_event_age_and_trace import logged, push
from tests.support import new_wallet, sql

FUNCTION = "ledger_reconcile"


def lines(stack, event: str = "ledger_reconciliation") -> list[dict]:
    return logged(stack, FUNCTION, lambda entry: entry.get("event") == event)


def tick(stack, event: str = "ledger_reconciliation") -> tuple[int, dict]:
    """One tick, published now; its status and the log line it wrote."""
    seen = len(lines(stack, event))
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    _, status = push(stack, FUNCTION, stack.settings().ledger_reconcile_tick_topic, b"tick", now)
    wait_for(lambda: len(lines(stack, event)) > seen, f"the {event} line", 30)
    return status, lines(stack, event)[seen]


def checkpoint(stack) -> list:
    return sql(stack, "SELECT after_xact::text, after_id FROM ledger.reconciliation_checkpoint")[0]


def test_a_tick_reconciles_what_is_new_and_moves_the_checkpoint(stack):
    new_wallet(stack, funded=10)
    before = checkpoint(stack)
    status, line = tick(stack)
    assert 200 <= status < 300
    assert line["severity"] == "INFO" and line["ok"] is True and line["mode"] == "incremental"
    assert line["violation_count"] == 0 and line["checkpoint_moved"] is True
    assert line["checkpoint_from"] == before and line["checkpoint_to"] == checkpoint(stack) != before
    assert line["examined"]["transactions"] >= 1


def test_a_tampered_ledger_is_logged_by_invariant_and_the_checkpoint_stays(stack):
    wallet = new_wallet(stack, funded=10)
    tick(stack)
    new_wallet(stack, funded=10)  # new since the last run: passed only by a clean one
    before = checkpoint(stack)
    # the owner, around the guards: a cached balance no longer its entries' sum
    sql(stack, "UPDATE ledger.wallets SET balance = balance + 1 WHERE id = :w", w=wallet)
    try:
        status, line = tick(stack)
    finally:
        sql(stack, "UPDATE ledger.wallets SET balance = balance - 1 WHERE id = :w", w=wallet)
    assert 200 <= status < 300  # a finished check: acknowledged, its answer would not change
    assert line["severity"] == "ERROR" and line["ok"] is False
    assert "running_balance_matches_cache" in line["violations"] and line["violation_count"] >= 1
    assert "running_balance_matches_cache" in line["message"]
    assert line["violation_ids"]["running_balance_matches_cache"] == [wallet]
    assert line["checkpoint_moved"] is False and checkpoint(stack) == before
    status, line = tick(stack)  # repaired: the next run passes what it held back
    assert line["ok"] is True and line["checkpoint_moved"] is True


def test_with_the_database_down_a_tick_answers_503_and_writes_nothing(stack):
    new_wallet(stack, funded=10)
    before = checkpoint(stack)
    stack.stop_service("postgres")
    try:
        status, line = tick(stack, "ledger_reconciliation_unfinished")
    finally:
        stack.start_service("postgres")
    assert status == 503  # Pub/Sub delivers the tick again
    assert line["severity"] == "WARNING" and "unreachable" in line["error"]
    assert checkpoint(stack) == before
