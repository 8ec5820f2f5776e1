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
(docs/operations.md#reconciliation-incremental-and-full).

The full run reads the whole ledger, so its statements get their own time limit: the
functions' LEDGER_DB_STATEMENT_TIMEOUT_MS bounds a request, and a million transactions
take longer than that to sum (bench/results/usage_intake.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from common import bootstrap
from common.adapters import incremental_reconciliation as incremental
from common.adapters.reconciliation import find_violations
from common.config import Settings, get_settings
from common.errors import DependencyUnavailable, LedgerError
from common.pacing import Pacer, unpaced

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


class Unfinished(DependencyUnavailable):
    """The check could not finish (the database unreachable or busy, or the run past its
    time): rolled back, so the checkpoint did not move; the answer is neither a sound
    ledger nor a broken one, and the same run may be tried again."""

    code = "reconciliation_unfinished"


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


def run_once(
    settings: Settings, full: bool = False, budget_s: float | None = None, pacer: Pacer | None = None
) -> dict[str, Any]:
    """One run on a connection of its own, committed when it finished. Each statement is
    bounded by LEDGER_RECONCILE_STATEMENT_TIMEOUT_MS or, with `budget_s`, by what remains
    of the budget, so the whole run ends within it. Raises Unfinished otherwise. The run
    is one snapshot, so it can't be cut into transactions: `pacer` rests after each of
    its statements instead (each one read, holding no lock a posting waits for)."""
    pacer = pacer or unpaced()
    timeout_ms = settings.reconcile_statement_timeout_ms if budget_s is None else max(1, int(budget_s * 1000))
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        con = bootstrap.connect_postgres(dataclasses.replace(settings, db_statement_timeout_ms=timeout_ms))
        try:
            con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")

            def run(sql: str, **params: Any) -> list[list[Any]]:
                if budget_s is not None:
                    left_ms = int((deadline - time.monotonic()) * 1000)
                    if left_ms <= 0:
                        raise Unfinished(f"the run went past its budget of {budget_s:g} s", details={"cause": "budget"})
                    con.run(f"SET LOCAL statement_timeout = {left_ms}")
                with pacer.batch():
                    return con.run(sql, **params)

            answer = reconcile(run, full)
            con.run("COMMIT")
        finally:
            con.close()
    except Unfinished:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to finish is reported as one
        from common.adapters.postgres import translate

        translated = translate(error) if not isinstance(error, LedgerError) else error
        cause = translated.code if isinstance(translated, LedgerError) else "unexpected"
        raise Unfinished(unfinished(error), details={"cause": cause}) from error
    return {**answer, "pacing": pacer.report()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="check the whole history, not only after the checkpoint")
    args = parser.parse_args(argv)
    try:
        answer = run_once(get_settings(), args.full, pacer=bootstrap.pacer())
    except Unfinished as error:
        print(json.dumps({"ok": None, "error": f"the check did not finish: {error.message}"}, indent=2))
        return 2
    print(json.dumps(answer, default=str, indent=2))
    return 1 if answer["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
