"""Pub/Sub function `outbox_sweeper`: publish the ledger events the after-commit relay missed.

Cloud Scheduler publishes to `outbox-sweep-tick` every minute. Every posting's event
is in the outbox from the moment it commits; the relay in the posting function
publishes it right after commit, best effort. This sweep publishes whatever is still
pending (Pub/Sub was down, an instance died), least-failed first, and reports events
pending for longer than LEDGER_OUTBOX_STUCK_AFTER_S as stuck.

The same tick then extends the ledger's hash chain (docs/tamper-evidence.md) and logs
its head, so a record of the head exists outside the database: one more small job of
the same kind, on the role that already reads the ledger, without a function of its own.
"""

import logging

import functions_framework

from common import bootstrap, logs
from common.config import get_settings
from common.errors import DependencyUnavailable
from common.hash_chain import extend

log = logging.getLogger("ledger.outbox_sweeper")
logs.configure_from_settings()
SWEEP_BUDGET_S = 45.0  # stop before the next tick comes
# At most this many batches of the chain's (hash_chain.EXTEND_BATCH) a tick: a backlog
# beyond that is caught up over the next ticks.
CHAIN_BATCHES = 20


@functions_framework.cloud_event
def outbox_sweeper(cloud_event):
    settings = get_settings()
    try:
        result = bootstrap.relay().sweep_all(min_age_s=settings.outbox_sweep_min_age_s, budget_s=SWEEP_BUDGET_S)
        backlog = bootstrap.outbox().backlog(settings.outbox_stuck_after_s)
    except DependencyUnavailable as error:
        log.error("outbox sweep could not run", extra={"error": error.message})
        raise
    level = logging.ERROR if backlog["stuck"] else logging.INFO
    log.log(level, "outbox sweep", extra={"published": result.published, "failed": result.failed, **backlog})
    try:
        chain = extend(bootstrap.chain_store(), max_batches=CHAIN_BATCHES)
    except DependencyUnavailable as error:
        log.error("hash chain could not be extended", extra={"error": error.message})
        raise
    log.info("hash chain extended", extra={"chain": chain})
