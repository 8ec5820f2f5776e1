"""Pub/Sub function `lot_expiry`: what remains in expired lots becomes breakage revenue.

Cloud Scheduler publishes to `lot-expiry-tick` every five minutes. Each expired lot
with credit left becomes one ledger transaction (action `expiry`: the wallet to the
breakage account), posted by ledger.expire_lots() under the wallet's lock. Its event
and its ERP lines (breakage revenue) follow like any posting's (the event with the
outbox sweep, which is paced: not after each commit). A tick delivered twice
finds nothing left to expire; a lot that fails is logged and tried again next tick.
The run is paced and stops before the next tick comes; what is left, that tick takes.
Expired credit is never spendable, whether or not this has run yet.
"""

import logging

import functions_framework

from common import bootstrap, cloud_events, logs
from common.config import get_settings

log = logging.getLogger("ledger.lot_expiry")
logs.configure_from_settings()


@functions_framework.cloud_event
@cloud_events.pubsub_function("lot_expiry")
def lot_expiry(cloud_event):
    # paced, a day of many due lots takes several ticks: each stops before the next comes
    # its events go out with the paced outbox sweep, not after each commit (docs/background-jobs.md)
    result = bootstrap.service().expire_lots(
        budget_s=get_settings().lot_expiry_budget_s, pacer=bootstrap.pacer(), publish_after_commit=False
    )
    level = logging.ERROR if result["failed"] else logging.WARNING if result["stopped_on_budget"] else logging.INFO
    log.log(level, "lot expiry", extra=result)
