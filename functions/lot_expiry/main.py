"""Pub/Sub function `lot_expiry`: what remains in expired lots becomes breakage revenue.

Cloud Scheduler publishes to `lot-expiry-tick` every five minutes. Each expired lot
with credit left becomes one ledger transaction (action `expiry`: the wallet to the
breakage account), posted by ledger.expire_lots() under the wallet's lock. Its event
and its ERP lines (breakage revenue) follow like any posting's. A tick delivered twice
finds nothing left to expire; a lot that fails is logged and tried again next tick.
The run is paced and stops before the next tick comes; what is left, that tick takes.
Expired credit is never spendable, whether or not this has run yet.
"""

import logging

import functions_framework

from common import bootstrap, cloud_events, logs

log = logging.getLogger("ledger.lot_expiry")
logs.configure_from_settings()
# Paced (docs/background-jobs.md), a day of many due lots takes several ticks: each
# stops before the next comes (every five minutes), well inside the function's timeout.
RUN_BUDGET_S = 270.0


@functions_framework.cloud_event
@cloud_events.pubsub_function("lot_expiry")
def lot_expiry(cloud_event):
    result = bootstrap.service().expire_lots(budget_s=RUN_BUDGET_S, pacer=bootstrap.pacer())
    log.log(logging.ERROR if result["failed"] else logging.INFO, "lot expiry", extra=result)
