"""Pub/Sub function `ledger_reconcile`: the daily check of the ledger's invariants.

Cloud Scheduler publishes to `ledger-reconcile-tick` once a day (schedule in
common/config.py). Each tick runs one incremental reconciliation, the default run of
`python -m common.reconcile` (docs/operations.md#the-daily-run): the transactions after
the checkpoint and the current state against its totals, in one snapshot, within
LEDGER_LEDGER_RECONCILE_BUDGET_S. It logs one line, `event=ledger_reconciliation`: at
INFO when every invariant holds (and the checkpoint moved), at ERROR naming the
invariants that fail (the checkpoint stays), which an alert policy watches. A run that
could not finish (the database down or too slow) wrote nothing and answers 503, so
Pub/Sub delivers the tick again.
"""

import logging

import functions_framework

from common import bootstrap, cloud_events, daily_reconciliation, logs
from common.config import get_settings
from common.reconcile import Unfinished

log = logging.getLogger("ledger.ledger_reconcile")
logs.configure_from_settings()


@functions_framework.errorhandler(Unfinished)
def unfinished(error):
    # an outage or a timeout is a warning (Pub/Sub retries); anything else, an error
    level = logging.ERROR if (error.details or {}).get("cause") == "unexpected" else logging.WARNING
    log.log(level, "the reconciliation did not finish: to be delivered again",
            extra={"event": "ledger_reconciliation_unfinished", "error": error.message})  # fmt: skip
    return error.body(), error.status, {"Retry-After": "60"}


@functions_framework.cloud_event
@cloud_events.pubsub_function("ledger_reconcile")
def ledger_reconcile(cloud_event):
    report = daily_reconciliation.run(get_settings(), pacer=bootstrap.pacer())
    if report["ok"]:
        log.info("the ledger's invariants hold", extra=report)
    else:
        log.error("the ledger's invariants are broken: %s", ", ".join(report["violations"]), extra=report)
