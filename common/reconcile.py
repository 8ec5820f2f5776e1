"""`python -m common.reconcile`: check the ledger's invariants; exit 1 if any fails, 2
if the check itself could not run (the database unreachable, or too slow for
LEDGER_RECONCILE_STATEMENT_TIMEOUT_MS), so an operator never reads an unfinished check
as a failed ledger, nor as a sound one.

It reads the whole ledger, so its statements get their own time limit: the functions'
LEDGER_DB_STATEMENT_TIMEOUT_MS bounds a request, and a million transactions take longer
than that to sum (bench/results/usage_intake.md)."""

import dataclasses
import json
import sys

from common import bootstrap
from common.adapters.reconciliation import find_violations
from common.config import get_settings
from common.errors import LedgerError


def main() -> int:
    settings = get_settings()
    checking = dataclasses.replace(settings, db_statement_timeout_ms=settings.reconcile_statement_timeout_ms)
    try:
        con = bootstrap.connect_postgres(checking)
        try:
            violations = find_violations(lambda sql: con.run(sql))
        finally:
            con.close()
    except Exception as error:  # noqa: BLE001 - any failure to finish is reported as one
        from common.adapters.postgres import translate

        translated = translate(error) if not isinstance(error, LedgerError) else error
        reason = f"{translated.code}: {translated.message}" if isinstance(translated, LedgerError) else repr(error)
        print(json.dumps({"ok": None, "error": f"the check did not finish: {reason}"}, indent=2))
        return 2
    print(json.dumps({"ok": not violations, "violations": violations}, default=str, indent=2))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
