"""Incremental reconciliation (db/schema/33_reconciliation_checkpoint.sql,
common/adapters/incremental_reconciliation.py): a run checks what came after the
checkpoint, names a bad transaction there and then does not advance; a row rewritten
below the checkpoint is the full run's to find; the checkpoint's totals stay exact
while postings run, an in-flight lower id included; only its function writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

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


def topup(stack, wallet: int, amount: int = 3) -> int:
    """A top-up of `wallet` (a test's own); its transaction's id."""
    con = owner(stack)
    try:
        post_topup(con.run, "TST", wallet, accounts(stack)["funding"], amount, prefix="rc")
        return con.run("SELECT max(id) FROM ledger.transactions WHERE wallet_id = :w", w=wallet)[0][0]
    finally:
        con.close()


def passed(stack, answer: dict, transactions: list[int]) -> list[int]:
    """Which of a test's own transactions a run passed: those in (from, to] in commit
    order. Other tests' late redeliveries may post meanwhile, so a run's own counts are
    never compared exactly."""
    (from_xact, from_id), (to_xact, to_id) = answer["horizon"]["from"], answer["horizon"]["to"]
    rows = sql(
        stack,
        "SELECT id FROM ledger.transactions WHERE id = ANY(CAST(:ids AS bigint[]))"
        " AND (created_xact, id) > (CAST(:fx AS xid8), :fi) AND (created_xact, id) <= (CAST(:tx AS xid8), :ti)"
        " ORDER BY id",
        ids=transactions,
        fx=from_xact,
        fi=from_id,
        tx=to_xact,
        ti=to_id,
    )
    return [row[0] for row in rows]


def test_a_run_reads_only_what_came_after_the_checkpoint_and_advances(stack):
    wallet = new_wallet(stack, funded=10)
    first = operator_run(stack)
    assert first["ok"] and first["mode"] == "incremental"
    mine = [topup(stack, wallet), topup(stack, wallet)]
    second = operator_run(stack)
    assert second["ok"], second["violations"]
    assert second["horizon"]["from"] == first["horizon"]["to"]
    assert passed(stack, second, mine) == mine
    assert second["horizon"]["transactions_passed"] >= 2
    assert second["examined"]["transactions"] >= second["horizon"]["transactions_passed"]
    assert second["examined"]["entries"] >= 4
    everything = sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]
    full = operator_run(stack, full=True)
    assert full["ok"] and full["mode"] == "full" and full["examined"]["transactions"] >= everything


def test_a_tampered_transaction_after_the_checkpoint_is_named_and_the_checkpoint_stays(stack):
    customer = new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, customer)  # committed and sound: passed only if the run finds nothing
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        before = incremental.checkpoint(run)
        advances = "SELECT count(*) FROM ledger.audit_log WHERE action = 'reconciliation.advance'"
        audited = run(advances)
        bad = write_around_the_posting(con, "usage", 5, customer, [(accounts(stack)["revenue"], -5), (customer, 5)])
        answer = reconcile(run, full=False)
        # one snapshot, which sees this transaction's own writes: an advance would add a row
        assert run(advances) == audited
        con.run("ROLLBACK")
    finally:
        con.close()
    assert list(answer["violations"]) == ["entries_follow_posting_rule"], answer["violations"]
    assert [row[0] for row in answer["violations"]["entries_follow_posting_rule"]] == [bad]
    assert answer["horizon"]["to"] == answer["horizon"]["from"] == list(before)
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


def test_every_clean_run_says_when_the_ledger_last_reconciled_even_with_nothing_new(stack):
    """The checkpoint's updated_at is when a run last found the ledger clean: the outbox
    sweeper logs its age for the overdue alert (docs/monitoring.md)."""
    operator_run(stack)
    when = "SELECT updated_at FROM ledger.reconciliation_checkpoint"
    before = sql(stack, when)[0][0]
    time.sleep(0.01)
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        # in this snapshot the run just made left nothing new to pass (or others' postings)
        incremental.advance(run, incremental.checkpoint(run))
        con.run("COMMIT")
    finally:
        con.close()
    assert sql(stack, when)[0][0] > before


def test_a_reference_written_around_the_guards_is_named_by_both_runs(stack):
    """The references the guards hold in place of foreign keys (migration 0019): an
    entry naming a wallet that does not exist, written with the guard off (rolled back),
    is named by the incremental run and by the full one."""
    wallet, funding = new_wallet(stack), accounts(stack)["funding"]
    operator_run(stack)
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run("ALTER TABLE ledger.entries DISABLE TRIGGER entries_must_balance")
        transaction = con.run(
            "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id)"
            " VALUES (:k, 'h', 'topup', 'TST', 5, :w) RETURNING id",
            k=f"rc-{uuid.uuid4()}",
            w=wallet,
        )[0][0]
        con.run(
            "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount) VALUES (:t, :f, 'TST', -5),"
            " (:t, :nowhere, 'TST', 5)",
            t=transaction,
            f=funding,
            nowhere=2**62,
        )
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        quick = incremental.find_violations_after(run, incremental.checkpoint(run))
        full = find_violations(run, transaction - 1)
        con.run("ROLLBACK")
    finally:
        con.close()
    for found in (quick, full):
        rows = found.get("references_exist")
        assert rows and len(rows) == 1 and rows[0][0] == "entry" and rows[0][2:4] == [transaction, 2**62], found


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
        lower = slow.run("SELECT max(id) FROM ledger.transactions WHERE wallet_id = :w", w=other)[0][0]
        higher = topup(stack, wallet)  # a higher id, committed first
        during = operator_run(stack)
        slow.run("COMMIT")
    finally:
        slow.close()
    assert lower < higher
    assert during["ok"] and passed(stack, during, [lower, higher]) == []
    after = operator_run(stack)
    assert after["ok"] and passed(stack, after, [lower, higher]) == [lower, higher]
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


def advance_as_operator(stack, begin: str | None) -> dict:
    """ledger.advance_reconciliation() called by the operator's login from where the
    checkpoint stands, in a transaction begun with `begin` (None: autocommit)."""
    con = login_connection(stack, "operator")
    try:
        if begin:
            con.run(begin)
        xact, transaction_id = incremental.checkpoint(con.run)
        with pytest.raises(DatabaseError) as error:
            con.run("SELECT * FROM ledger.advance_reconciliation(CAST(:x AS xid8), :i)", x=xact, i=transaction_id)
        return error.value.args[0]
    finally:
        con.close()


@pytest.mark.parametrize("begin", [None, "BEGIN", "START TRANSACTION ISOLATION LEVEL READ COMMITTED"])
def test_the_checkpoint_moves_only_in_the_snapshot_the_checks_read(stack, begin):
    """In READ COMMITTED each statement takes a new snapshot, and the function's own
    would pass transactions that no check read: refused."""
    wallet = new_wallet(stack, funded=10)
    operator_run(stack)
    mine = topup(stack, wallet)
    refusal = advance_as_operator(stack, begin)
    assert (refusal["C"], refusal["M"]) == ("25000", "reconciliation_needs_one_snapshot")
    assert passed(stack, operator_run(stack), [mine]) == [mine]  # not passed by the refused call


def test_each_advance_is_on_the_audit_log_with_its_login_and_range(stack):
    wallet = new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, wallet)
    answer = operator_run(stack)
    assert answer["horizon"]["transactions_passed"] >= 1
    (actor, before, after), *_ = sql(
        stack,
        "SELECT actor, before, after FROM ledger.audit_log WHERE action = 'reconciliation.advance'"
        " AND target = 'reconciliation_checkpoint' ORDER BY id DESC LIMIT 1",
    )
    assert actor == {"principal": stack.login("operator")[0]}
    assert [before["after_xact"], before["after_id"]] == answer["horizon"]["from"]
    assert [after["after_xact"], after["after_id"]] == answer["horizon"]["to"]
    assert after["taken"] == answer["horizon"]["transactions_passed"]
    assert after["transactions"] == before["transactions"] + after["taken"]


def test_of_two_runs_at_once_the_second_to_advance_gets_a_serialization_failure(stack):
    wallet = new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, wallet)
    first, second = login_connection(stack, "operator"), login_connection(stack, "operator")
    try:
        first.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        one = reconcile(lambda statement, **params: first.run(statement, **params), False)
        second.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        started = incremental.checkpoint(second.run)  # its snapshot: before the first commits
        first.run("COMMIT")
        with pytest.raises(DatabaseError) as error:
            reconcile(lambda statement, **params: second.run(statement, **params), False)
        second.run("ROLLBACK")
    finally:
        first.close()
        second.close()
    assert one["ok"] and one["horizon"]["transactions_passed"] >= 1
    assert list(started) == one["horizon"]["from"]
    assert error.value.args[0]["C"] == "40001"
    assert operator_run(stack)["horizon"]["from"] == one["horizon"]["to"]  # the next starts where it ended


def test_the_command_that_lost_the_race_says_to_run_again(stack):
    """`python -m common.reconcile` while another run holds a moved checkpoint: it
    waits on the lock, then finds the checkpoint moved; exit 2 with that, no traceback."""
    wallet = new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, wallet)
    holder = login_connection(stack, "operator")
    try:
        holder.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert reconcile(lambda statement, **params: holder.run(statement, **params), False)["ok"]
        command = subprocess.Popen(
            [sys.executable, "-m", "common.reconcile"],
            env={**os.environ, **stack.operator_env()},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the command has read its snapshot and waits for the checkpoint's row lock
        held_by = holder.run("SELECT pg_backend_pid()")[0][0]
        deadline = time.monotonic() + 120
        while not sql(stack, "SELECT 1 FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))", p=held_by):
            assert command.poll() is None and time.monotonic() < deadline, "the command never waited on the lock"
            time.sleep(0.05)
        holder.run("COMMIT")
        out, err = command.communicate(timeout=120)
    finally:
        holder.close()
    assert command.returncode == 2, out + err
    assert json.loads(out) == {
        "ok": None,
        "error": "the check did not finish: reconciliation_moved: another run moved the checkpoint since this one"
        " started; run again",
    }
    assert "Traceback" not in out + err


def test_a_wallet_lot_balance_is_checked_where_new_transactions_touched_it(stack):
    """The incremental run sums the lots of the wallets its new transactions touched;
    one nudged by hand (rolled back) without a new transaction is the full run's."""
    untouched, touched = new_wallet(stack, funded=10), new_wallet(stack, funded=10)
    operator_run(stack)
    topup(stack, touched)
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run(
            "UPDATE ledger.wallets SET lot_balance = lot_balance + 1 WHERE id = ANY(CAST(:w AS bigint[]))",
            w=[untouched, touched],
        )
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        quick = incremental.find_violations_after(run, incremental.checkpoint(run))
        full = find_violations(run)
        con.run("ROLLBACK")
    finally:
        con.close()
    assert [row[0] for row in quick["lot_balance_equals_lots"]] == [touched]
    assert sorted(row[0] for row in full["lot_balance_equals_lots"]) == [untouched, touched]


@pytest.mark.parametrize(
    ("table", "key_change"),
    [
        ("reconciliation_asset_totals", "asset_code = :asset"),
        ("reconciliation_system_totals", "wallet_id = :system, asset_code = :asset"),
    ],
)
def test_a_total_never_changes_whose_it_is_even_as_its_horizon_advances(stack, table, key_change):
    new_wallet(stack, funded=10)
    operator_run(stack)
    asset = "RZ" + uuid.uuid4().hex[:8].upper()
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("SELECT ledger.create_asset(:c, CAST(0 AS smallint))", c=asset)
        system = con.run("SELECT min(id) FROM ledger.wallets WHERE asset_code = :c AND kind = 'system'", c=asset)[0][0]
        moved = "wallet_id = (SELECT min(wallet_id) FROM ledger.reconciliation_system_totals)"
        where = "asset_code = 'TST'" if table == "reconciliation_asset_totals" else moved
        with pytest.raises(DatabaseError) as error:
            con.run(
                f"UPDATE ledger.{table} SET {key_change}, horizon_id = horizon_id + 1 WHERE {where}",
                asset=asset,
                **({"system": system} if "system" in key_change else {}),
            )
        con.run("ROLLBACK")
    finally:
        con.close()
    assert error.value.args[0]["M"] == "reconciliation_backwards"


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
    # transactions read: the tail (and whatever a late redelivery posted meanwhile), not all
    assert 40 <= int(incremental_row.split("|")[3].strip()) < 400


@pytest.mark.grows_ledger
def test_the_vacuum_bench_prints_each_append_only_table(stack):
    result = bench("bench.vacuum", "--load", "200", "--steps", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("| ledger.entries |") == 3 and "after 200 transactions" in result.stdout
