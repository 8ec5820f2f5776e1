"""The invariant check itself can fail: a cached balance nudged by hand (inside a
transaction that is rolled back) is reported."""

import json
import os
import subprocess
import sys

import pytest

from common.adapters import incremental_reconciliation as incremental
from common.adapters.reconciliation import find_violations
from emulators.stack import REPO
from tests.support import new_wallet, owner, sql


def test_a_cached_balance_that_drifts_from_its_entries_is_reported(stack):
    wallet = new_wallet(stack, funded=10)
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("UPDATE ledger.wallets SET balance = balance + 1 WHERE id = :w", w=wallet)
        violations = find_violations(lambda sql: con.run(sql))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert [row[0] for row in violations["cached_balance_equals_entry_sum"]] == [wallet]
    assert [row[0] for row in violations["running_balance_matches_cache"]] == [wallet]


@pytest.mark.parametrize("nudge", ["balance = 5", "entry_count = 1"])
def test_a_wallet_without_entries_that_holds_or_counts_something_is_named(stack, nudge):
    """A wallet with no entries has no last running balance to compare: it must hold
    nothing and count none, which both runs check per wallet."""
    wallet = new_wallet(stack)
    con = owner(stack)
    try:
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        con.run(f"UPDATE ledger.wallets SET {nudge} WHERE id = :w", w=wallet)
        run = lambda statement, **params: con.run(statement, **params)  # noqa: E731
        full = find_violations(run)
        quick = incremental.find_violations_after(run, incremental.checkpoint(run))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert [row[0] for row in full["running_balance_matches_cache"]] == [wallet]
    assert [row[0] for row in quick["running_balance_matches_cache"]] == [wallet]


def reconcile_cli(stack, **settings):
    env = {**os.environ, **stack.operator_env(), **{f"LEDGER_{k.upper()}": str(v) for k, v in settings.items()}}
    return subprocess.run(
        [sys.executable, "-m", "common.reconcile"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_the_reconciliation_command_reads_the_ledger_under_its_own_time_limit(stack):
    """A request's statement limit (5 s) is far too short to sum a grown ledger; the
    command has its own. Given a request limit of 1 ms it still passes."""
    result = reconcile_cli(stack, db_statement_timeout_ms=1)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["mode"], answer["violations"]) == (True, "incremental", {})
    assert set(answer["horizon"]) == {"from", "to", "transactions_passed"}


def test_the_full_reconciliation_reads_every_row_and_advances_too(stack):
    wallet = new_wallet(stack, funded=10)
    mine = sql(stack, "SELECT max(id) FROM ledger.transactions WHERE wallet_id = :w", w=wallet)[0][0]
    before = sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]
    result = subprocess.run(
        [sys.executable, "-m", "common.reconcile", "--full"],
        env={**os.environ, **stack.operator_env()},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert (answer["ok"], answer["mode"]) == (True, "full")
    # every transaction of its snapshot: at least those committed before it started
    # (others' late redeliveries may post meanwhile), at most those after it ended
    after = sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]
    assert before <= answer["examined"]["transactions"] <= after
    (from_xact, from_id), (to_xact, to_id) = answer["horizon"]["from"], answer["horizon"]["to"]
    assert sql(
        stack,
        "SELECT (created_xact, id) > (CAST(:fx AS xid8), :fi) AND (created_xact, id) <= (CAST(:tx AS xid8), :ti)"
        " FROM ledger.transactions WHERE id = :t",
        t=mine,
        fx=from_xact,
        fi=from_id,
        tx=to_xact,
        ti=to_id,
    ) == [[True]]


def test_a_reconciliation_that_cannot_finish_says_so_and_is_no_verdict(stack):
    result = reconcile_cli(stack, reconcile_statement_timeout_ms=1)
    assert result.returncode == 2, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] is None and answer["error"].startswith("the check did not finish")
    assert "Traceback" not in result.stdout + result.stderr
