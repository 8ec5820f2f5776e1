"""`python -m common.reconcile`: check the ledger's invariants; exit 1 if any fails."""

import json
import sys

from common import bootstrap
from common.adapters.postgres import run_with_retry
from common.adapters.reconciliation import find_violations


def main() -> int:
    violations = find_violations(lambda sql: run_with_retry(bootstrap.pool(), lambda con: con.run(sql)))
    print(json.dumps({"ok": not violations, "violations": violations}, default=str, indent=2))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
