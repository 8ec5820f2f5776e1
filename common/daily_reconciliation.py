"""The daily reconciliation's one log line (functions/ledger_reconcile): one incremental
run of `python -m common.reconcile` (common/reconcile.py) within its budget, reported as
the fields a log-based metric and an operator read.

A violation's rows carry amounts and balances; the line names each invariant that
failed, how many rows it found (up to 10: the run stops there) and the first column of
each, which is always an id (a transaction, entry, wallet or lot) or an asset's code,
never the money itself: `python -m common.reconcile` shows the rest to an operator.
"""

from __future__ import annotations

from typing import Any

from common import reconcile
from common.config import Settings
from common.pacing import Pacer

EVENT = "ledger_reconciliation"


def run(settings: Settings, pacer: Pacer | None = None) -> dict[str, Any]:
    """One run, committed (the checkpoint moved if it found nothing), resting between
    its statements as `pacer` says; the log line's fields. Raises reconcile.Unfinished
    when it could not finish, with nothing written."""
    answer = reconcile.run_once(settings, full=False, budget_s=settings.ledger_reconcile_budget_s, pacer=pacer)
    return {**fields(answer), "pacing": answer.get("pacing", {})}


def fields(answer: dict[str, Any]) -> dict[str, Any]:
    violations = answer["violations"]
    horizon = answer["horizon"]
    return {
        "event": EVENT,
        "ok": answer["ok"],
        "mode": answer["mode"],
        # the figure the alert watches (infra/terraform/monitoring.tf): invariants failing
        "violation_count": len(violations),
        "violations": {name: len(rows) for name, rows in violations.items()},
        "violation_ids": {name: [_id(row) for row in rows] for name, rows in violations.items()},
        "examined": answer["examined"],
        "checkpoint_from": horizon["from"],
        "checkpoint_to": horizon["to"],
        "checkpoint_moved": horizon["to"] != horizon["from"],
        "transactions_passed": horizon["transactions_passed"],
    }


def _id(row: list[Any]) -> Any:
    first = row[0] if row else None
    return first if isinstance(first, (int, str)) or first is None else str(first)
