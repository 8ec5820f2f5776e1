"""Incremental reconciliation (db/schema/33_reconciliation_checkpoint.sql,
common/adapters/incremental_reconciliation.py): a run checks what came after the
checkpoint, names a bad transaction there and then does not advance; a row rewritten
below the checkpoint is the full run's to find; the checkpoint's totals stay exact
while postings run, an in-flight lower id included; only its function writes it."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from pg8000.exceptions import DatabaseError

from common.adapters import incremental_reconciliation as incremental
from common.adapters.reconciliation import find_violations
from common.reconcile import reconcile
from emulators.stack import REPO
from tests.integration.test_posting_rules import accounts, write_around_the_posting
from tests.support import login_connection, new_wallet, owner, post_topup, sql


def run_once(con, full: bool = False, commit: bool = True) -> dict:
    con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    answer = reconcile(lambda statement, **params: con.run(statement, **params), full)
    con.run("COMMIT" if commit else "ROLLBACK")
    return answer


def operator_run(stack, full: bool = False) -> dict:
    con = login_connection(stack, "operator")
    try:
        return run_once(con, full)
    finally:
        con.close()


def topup(stack, wallet: int, amount: int = 3) -> None:
    con = owner(stack)
    try:
        post_topup(con.run, "TST", wallet, accounts(stack)["funding"], amount, prefix="rc")
    finally:
        con.close()


def test_a_run_reads_only_what_came_after_the_checkpoint_and_advances(stack):
    wallet = new_wallet(stack, funded=10)
    first = operator_run(stack)
    assert first["ok"] and first["mode"] == "incremental"
    topup(stack, wallet)
    topup(stack, wallet)
    second = operator_run(stack)
    assert second["ok"], second["violations"]
    assert second["horizon"]["from"] == first["horizon"]["to"]
    assert second["horizon"]["transactions_passed"] == 2
    assert second["examined"]["transactions"] == 2 and second["examined"]["entries"] == 4
    full = operator_run(stack, full=True)
    assert full["ok"] and full["mode"] == "full" and full["examined"]["transactions"] > 2


def test_a_tampered_transaction_after_the_checkpoint_is_named_and_the_checkpoint_stays(stack):
    customer = new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, customer)  # committed and sound: passed only if the run finds nothing
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        before = incremental.checkpoint(run)
        bad = write_around_the_posting(con, "usage", 5, customer, [(accounts(stack)["revenue"], -5), (customer, 5)])
        answer = reconcile(run, full=False)
        after = incremental.checkpoint(run)
        con.run("ROLLBACK")
    finally:
        con.close()
    assert list(answer["violations"]) == ["entries_follow_posting_rule"], answer["violations"]
    assert [row[0] for row in answer["violations"]["entries_follow_posting_rule"]] == [bad]
    assert answer["horizon"]["to"] == answer["horizon"]["from"] == list(before) == list(after)
    assert operator_run(stack)["horizon"]["transactions_passed"] >= 1  # without it, the run goes on


def test_a_running_balance_that_does_not_continue_is_named(stack):
    """The induction step: a running balance after the checkpoint nudged by hand (guard
    off, rolled back) breaks the chain from one entry to the next, though the wallet's
    cache still equals its last entry's."""
    wallet = new_wallet(stack)
    operator_run(stack)
    topup(stack, wallet)
    topup(stack, wallet)
    first = sql(stack, "SELECT min(id) FROM ledger.entries WHERE wallet_id = :w", w=wallet)[0][0]
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run("ALTER TABLE ledger.entries DISABLE TRIGGER entries_append_only")
        con.run("UPDATE ledger.entries SET balance_after = balance_after + 1 WHERE id = :e", e=first)
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        quick = incremental.find_violations_after(run, incremental.checkpoint(run))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert list(quick) == ["running_balance_continuous"], quick
    assert [row[1] for row in quick["running_balance_continuous"]] == [wallet, wallet]


def test_a_transaction_rewritten_below_the_checkpoint_is_found_only_by_the_full_run(stack):
    """The trade-off: an incremental run trusts what it checked before. A transaction
    checked, then rewritten by the owner with its guard off, is the full run's to find."""
    customer = new_wallet(stack, funded=10)
    topup(stack, customer)
    operator_run(stack)
    target = sql(stack, "SELECT max(id) FROM ledger.transactions")[0][0]
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run("ALTER TABLE ledger.transactions DISABLE TRIGGER transactions_append_only")
        con.run("UPDATE ledger.transactions SET amount = amount + 1 WHERE id = :t", t=target)
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        after = incremental.checkpoint(run)
        quick = incremental.find_violations_after(run, after)
        full = find_violations(run)
        con.run("ROLLBACK")
    finally:
        con.close()
    assert int(after[1]) >= target
    assert "entries_follow_posting_rule" not in quick
    assert [row[0] for row in full["entries_follow_posting_rule"]] == [target]


def test_an_in_flight_lower_id_is_not_passed_and_counted_once_it_commits(stack):
    wallet, other = new_wallet(stack, funded=10), new_wallet(stack)
    operator_run(stack)
    slow = owner(stack)
    try:
        slow.run("BEGIN")
        post_topup(slow.run, "TST", other, accounts(stack)["funding"], 7, prefix="slow")  # the lower id
        topup(stack, wallet)  # a higher id, committed first
        during = operator_run(stack)
        slow.run("COMMIT")
    finally:
        slow.close()
    assert during["ok"] and during["horizon"]["transactions_passed"] == 0
    after = operator_run(stack)
    assert after["ok"] and after["horizon"]["transactions_passed"] == 2
    assert operator_run(stack, full=True)["ok"]  # the totals equal the entries' sums


def test_runs_during_concurrent_postings_leave_the_next_run_exact(stack):
    wallets = [new_wallet(stack, funded=10) for _ in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def post(wallet: int) -> None:
        con = owner(stack)
        try:
            while not stop.is_set():
                post_topup(con.run, "TST", wallet, accounts(stack)["funding"], 2, prefix="rc-load")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            con.close()

    threads = [threading.Thread(target=post, args=(wallet,)) for wallet in wallets]
    for thread in threads:
        thread.start()
    try:
        answers = [operator_run(stack) for _ in range(5)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert all(answer["ok"] for answer in answers), [a["violations"] for a in answers]
    assert operator_run(stack)["ok"]
    full = operator_run(stack, full=True)
    assert full["ok"], full["violations"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.reconciliation_checkpoint SET after_id = after_id - 1",
        "UPDATE ledger.reconciliation_asset_totals SET customer_sum = customer_sum + 1",
        "UPDATE ledger.reconciliation_system_totals SET balance = balance + 1",
        "DELETE FROM ledger.reconciliation_checkpoint",
    ],
)
def test_the_checkpoint_never_moves_back_even_for_the_owner(stack, statement):
    new_wallet(stack, funded=10)
    operator_run(stack)
    con = owner(stack)
    try:
        with pytest.raises(DatabaseError) as error:
            con.run(statement)
    finally:
        con.close()
    assert error.value.args[0]["M"] in ("reconciliation_backwards", "append_only")


@pytest.mark.parametrize("login", ["operator", "relay", "poster"])
def test_no_function_role_writes_the_checkpoint_but_through_its_function(stack, login):
    con = login_connection(stack, login)
    try:
        with pytest.raises(DatabaseError) as error:
            con.run("UPDATE ledger.reconciliation_checkpoint SET after_id = after_id + 1")
    finally:
        con.close()
    assert error.value.args[0]["C"] == "42501"


def test_a_total_nudged_by_hand_is_named_by_both_runs(stack):
    new_wallet(stack, funded=10)
    operator_run(stack)
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run("ALTER TABLE ledger.reconciliation_asset_totals DISABLE TRIGGER reconciliation_asset_totals_forward")
        con.run(
            "UPDATE ledger.reconciliation_asset_totals SET customer_sum = customer_sum + 1 WHERE asset_code = 'TST'"
        )
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        quick = incremental.find_violations_after(run, incremental.checkpoint(run))
        full = find_violations(run)
        con.run("ROLLBACK")
    finally:
        con.close()
    assert "customer_totals_equal_entry_sums" in quick and "entries_sum_to_zero_per_asset" in quick
    assert [row[0] for row in full["reconciliation_asset_totals_exact"]] == ["TST"]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args, "--profile", "test"], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.mark.grows_ledger
def test_the_reconciliation_bench_runs_both_modes(stack):
    """`python -m bench.reconcile` in a small run; its figures are not looked at."""
    result = bench("bench.reconcile", "--count", "400", "--tail", "40")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| full |" in result.stdout and "| incremental |" in result.stdout
    incremental_row = next(line for line in result.stdout.splitlines() if line.startswith("| incremental |"))
    assert incremental_row.split("|")[3].strip() == "40"  # transactions read: the tail alone


@pytest.mark.grows_ledger
def test_the_vacuum_bench_prints_each_append_only_table(stack):
    result = bench("bench.vacuum", "--load", "200", "--steps", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("| ledger.entries |") == 3 and "after 200 transactions" in result.stdout
