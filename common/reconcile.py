"""`python -m common.reconcile [--full]`: check the ledger's invariants; exit 1 if any
fails, 2 if the check itself could not run (the database unreachable, or too slow for
LEDGER_RECONCILE_STATEMENT_TIMEOUT_MS), so an operator never reads an unfinished check
as a failed ledger, nor as a sound one.

By default it checks only what came after the reconciliation checkpoint, with the
checkpoint's totals (common/adapters/incremental_reconciliation.py), so the daily run
costs what is new; `--full` reads the whole history (common/adapters/reconciliation.py).
Either runs in one repeatable-read snapshot and, when it found nothing, moves the
checkpoint to the last transaction final in that snapshot, in the same transaction.
The answer names the mode, the checkpoint before and after, and the rows it read
(docs/operations.md#reconciliation-incremental-and-full). Two runs at once: the second
to advance finds the checkpoint moved (a serialization failure) and exits 2, asking to
be run again.

The full run reads the whole ledger, so its statements get their own time limit: the
functions' LEDGER_DB_STATEMENT_TIMEOUT_MS bounds a request, and a million transactions
take longer than that to sum (bench/results/usage_intake.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from common import bootstrap
from common.adapters import incremental_reconciliation as incremental
from common.adapters.reconciliation import find_violations
from common.config import get_settings
from common.errors import LedgerError

SERIALIZATION_FAILURE = "40001"


def reconcile(run: incremental.Run, full: bool) -> dict[str, Any]:
    """One run in the caller's transaction, which must be a repeatable-read one that has
    read nothing yet: the checkpoint is the snapshot's first read. Advances the
    checkpoint when nothing is found; the caller commits."""
    after = incremental.checkpoint(run)
    violations = find_violations(run) if full else incremental.find_violations_after(run, after)
    examined = incremental.examined(run, None if full else after)
    to = incremental.advance(run, after) if not violations else (*after, 0)
    return {
        "ok": not violations,
        "mode": "full" if full else "incremental",
        "horizon": {"from": list(after), "to": list(to[:2]), "transactions_passed": to[2]},
        "examined": examined,
        "violations": violations,
    }


def unfinished(error: Exception) -> str:
    """Why a run did not finish, for the operator. A serialization failure can only be
    another run's: it moved the checkpoint after this run's snapshot was taken
    (ledger.advance_reconciliation() locks it FOR UPDATE), so this one's checks are
    stale and it changed nothing."""
    from common.adapters.postgres import error_fields, translate

    if error_fields(error).get("C") == SERIALIZATION_FAILURE:
        return "reconciliation_moved: another run moved the checkpoint since this one started; run again"
    translated = translate(error) if not isinstance(error, LedgerError) else error
    return f"{translated.code}: {translated.message}" if isinstance(translated, LedgerError) else repr(error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="check the whole history, not only after the checkpoint")
    args = parser.parse_args(argv)
    settings = get_settings()
    checking = dataclasses.replace(settings, db_statement_timeout_ms=settings.reconcile_statement_timeout_ms)
    try:
        con = bootstrap.connect_postgres(checking)
        try:
            con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            answer = reconcile(lambda sql, **params: con.run(sql, **params), args.full)
            con.run("COMMIT")
        finally:
            con.close()
    except Exception as error:  # noqa: BLE001 - any failure to finish is reported as one
        print(json.dumps({"ok": None, "error": f"the check did not finish: {unfinished(error)}"}, indent=2))
        return 2
    print(json.dumps(answer, default=str, indent=2))
    return 1 if answer["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
