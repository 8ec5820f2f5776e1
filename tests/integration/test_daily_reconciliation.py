"""The daily reconciliation (common/daily_reconciliation.py, functions/ledger_reconcile)
as its own database login: a run checks and moves the checkpoint with no more than its
role's rights, and a run that cannot finish within its budget writes nothing and says
it did not finish (a 503 for the function), never that the ledger is sound or broken."""

from __future__ import annotations

import dataclasses

import pytest

from common import daily_reconciliation
from common.config import get_settings
from common.reconcile import Unfinished
from tests.support import new_wallet, owner, sql


def as_reconciler(stack, **changes):
    user, password = stack.login("reconciler")
    return dataclasses.replace(get_settings(), db_user=user, db_password=password, **changes)


def checkpoint(stack) -> list:
    return sql(stack, "SELECT after_xact::text, after_id FROM ledger.reconciliation_checkpoint")[0]


def test_a_run_as_its_own_login_checks_what_is_new_and_moves_the_checkpoint(stack):
    daily_reconciliation.run(as_reconciler(stack))
    new_wallet(stack, funded=10)
    new_wallet(stack, funded=10)
    report = daily_reconciliation.run(as_reconciler(stack))
    assert report["event"] == "ledger_reconciliation" and report["mode"] == "incremental"
    assert report["ok"] and report["violation_count"] == 0 and report["violations"] == {}
    assert report["checkpoint_moved"] and report["transactions_passed"] >= 2
    assert report["examined"]["transactions"] >= 2
    assert checkpoint(stack) == report["checkpoint_to"]


def test_a_run_past_its_budget_is_rolled_back_and_reported_unfinished(stack):
    new_wallet(stack, funded=10)
    before = checkpoint(stack)
    holder = owner(stack)  # holds the checkpoint's row: the run's advance waits on it
    try:
        holder.run("START TRANSACTION")
        holder.run("SELECT 1 FROM ledger.reconciliation_checkpoint FOR UPDATE")
        with pytest.raises(Unfinished) as error:
            daily_reconciliation.run(as_reconciler(stack, ledger_reconcile_budget_s=2.0))
        holder.run("ROLLBACK")
    finally:
        holder.close()
    assert error.value.status == 503 and error.value.code == "reconciliation_unfinished"
    assert error.value.details["cause"] in ("database_busy", "budget")  # cancelled in the wait, or out of time before
    assert checkpoint(stack) == before
    assert daily_reconciliation.run(as_reconciler(stack))["checkpoint_moved"]  # the retry goes on
