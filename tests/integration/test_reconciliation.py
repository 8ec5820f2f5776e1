"""The invariant check itself can fail: a cached balance nudged by hand (inside a
transaction that is rolled back) is reported."""

import json
import os
import subprocess
import sys

from common.adapters.reconciliation import find_violations
from emulators.stack import REPO
from tests.support import new_wallet, owner


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
    new_wallet(stack, funded=10)
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
    assert answer["examined"]["transactions"] == answer["examined"]["transactions"] >= 1
    assert answer["horizon"]["to"] != answer["horizon"]["from"]


def test_a_reconciliation_that_cannot_finish_says_so_and_is_no_verdict(stack):
    result = reconcile_cli(stack, reconcile_statement_timeout_ms=1)
    assert result.returncode == 2, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] is None and answer["error"].startswith("the check did not finish")
    assert "Traceback" not in result.stdout + result.stderr
