"""Pub/Sub function `erp_reconcile`: the daily reconciliation of the ledger with the ERP.

Cloud Scheduler publishes to `erp-reconcile-tick` (schedule in common/config.py). It
compares the ledger's debits and credits per period and GL account, for everything
the export has delivered, with the ERP's booked totals, and logs every difference at
ERROR, which is what an alerting policy watches. The same check runs by hand as
`python -m common.ops reconcile`.
"""

import logging

import functions_framework

from common import bootstrap, cloud_events, logs
from common.config import get_settings
from common.erp_export import DeliveryFailed, ReadingUnsettled, StillSumming, reconcile

log = logging.getLogger("ledger.erp_reconcile")
logs.configure_from_settings()
# Summing what was delivered since the last run stops here, well inside the function's
# timeout; a first run over a long history (after an upgrade) goes on in the retries.
SUM_BUDGET_S = 240.0


@functions_framework.cloud_event
@cloud_events.pubsub_function("erp_reconcile")
def erp_reconcile(cloud_event):
    try:
        report = reconcile(
            bootstrap.erp_store(),
            bootstrap.erp_client(),
            get_settings().erp_stream,
            budget_s=SUM_BUDGET_S,
            pacer=bootstrap.pacer(),
        )
    except (StillSumming, ReadingUnsettled) as error:
        # Pub/Sub delivers the tick again; what was summed stays summed
        log.warning("reconciliation not finished; the tick is retried", extra={"error": str(error)})
        raise
    except DeliveryFailed as error:
        log.error("reconciliation could not read the ERP's totals", extra={"error": str(error)})
        raise
    # `event` and the count name the line and its figure for the log-based metric
    # (infra/terraform/monitoring.tf); the differences themselves are a list
    extra = {"event": "erp_reconciliation", "difference_count": len(report["differences"]), **report}
    if report["ok"]:
        log.info("ledger and ERP reconcile", extra=extra)
    else:
        log.error("ledger and ERP differ", extra=extra)
