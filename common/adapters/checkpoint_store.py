"""The balance checkpoints in Postgres: one advancing step, and where the horizon stands;
and how long ago the ledger last reconciled clean (the reconciliation checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Run = Callable[..., list[list[Any]]]

ADVANCE_SQL = "SELECT ledger.advance_balance_checkpoints(CAST(:limit AS integer))"
HORIZON_SQL = """
SELECT h.after_xact::text, h.after_id, (SELECT count(*) FROM ledger.balance_checkpoints)
  FROM ledger.balance_horizon h"""
RECONCILED_AGE_SQL = """
SELECT extract(epoch FROM clock_timestamp() - updated_at)::float8 FROM ledger.reconciliation_checkpoint"""


class PostgresCheckpoints:
    def __init__(self, run: Run) -> None:
        self._run = run

    def advance(self, max_rows: int) -> int:
        return int(self._run(ADVANCE_SQL, limit=max_rows)[0][0])

    def horizon(self) -> dict[str, Any]:
        xact, transaction_id, accounts = self._run(HORIZON_SQL)[0]
        return {"created_xact": int(xact), "transaction_id": transaction_id, "accounts": accounts}

    def reconciled_age_s(self) -> float:
        """Seconds since a reconciliation last found the ledger clean (moved the
        checkpoint, or found nothing new to move it past)."""
        return round(float(self._run(RECONCILED_AGE_SQL)[0][0]), 1)
