"""Pub/Sub function `dormancy`: dormant processing (docs/dormancy.md).

Cloud Scheduler publishes to `dormancy-tick` daily. Each run pages through the wallets
whose asset and model have a dormancy policy, in id order: a wallet in its warning
period gets one notice per period (settings.notifications_topic); one inactive for the
whole period becomes `dormant`, and under a sweep policy its balance moves to the
asset's dormant account (action dormant_sweep), whose event and ERP lines follow like
any posting's. A wallet a posting holds is left for the next run; a tick delivered
twice finds nothing left to do. The report per asset and model is one log line.
"""

import logging

import functions_framework

from common import cloud_events, logs
from common.dormancy import runner

log = logging.getLogger("ledger.dormancy")
logs.configure_from_settings()
# Paced (docs/background-jobs.md), a run stops well inside the function's 540 s timeout;
# the wallets it did not reach, the next day's run takes.
RUN_BUDGET_S = 480.0


@functions_framework.cloud_event
@cloud_events.pubsub_function("dormancy")
def dormancy(cloud_event):
    report = runner(budget_s=RUN_BUDGET_S).run()
    log.log(logging.ERROR if report.total().failed else logging.INFO, "dormancy tick", extra=report.summary())
