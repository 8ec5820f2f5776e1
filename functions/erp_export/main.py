"""Pub/Sub function `erp_export`: one ERP export pass per Cloud Scheduler tick.

Cloud Scheduler publishes to the `erp-export-tick` topic every 5 minutes (names and
schedule in common/config.py); a pass stops starting batches after 270 s, so during a
backlog the passes run back to back, paced (docs/background-jobs.md). A pass re-sends batches that are due for a retry, then
exports every ledger transaction committed since the last pass, in batches, to the
ERP (common/erp_export.py). The input is the ledger itself, not the ledger events: a
lost, late or duplicated Pub/Sub message cannot change what the ERP receives, and a
duplicated tick only runs a pass that finds nothing new.
"""

import logging

import functions_framework

from common import bootstrap, cloud_events, logs
from common.errors import DependencyUnavailable

log = logging.getLogger("ledger.erp_export")
logs.configure_from_settings()


@functions_framework.cloud_event
@cloud_events.pubsub_function("erp_export")
def erp_export(cloud_event):
    try:
        report = bootstrap.erp_export().run_pass()
    except DependencyUnavailable as error:
        # Nothing was recorded: fail the delivery so Pub/Sub brings the tick again.
        log.error("ERP export pass could not run", extra={"error": error.message})
        raise
    level = logging.WARNING if report.erp_down else logging.INFO
    # `event` names the line for its log-based metrics (infra/terraform/monitoring.tf)
    log.log(level, "ERP export pass", extra={"event": "erp_export_pass", **report.as_dict()})
