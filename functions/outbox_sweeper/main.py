"""Pub/Sub function `outbox_sweeper`: publish the ledger events the after-commit relay missed.

Cloud Scheduler publishes to `outbox-sweep-tick` every minute. Every posting's event
is in the outbox from the moment it commits; the relay in the posting function
publishes it right after commit, best effort. This sweep publishes whatever is still
pending (Pub/Sub was down, an instance died), least-failed first, and reports events
pending for longer than LEDGER_OUTBOX_STUCK_AFTER_S as stuck.

The same tick then extends the ledger's hash chain (docs/tamper-evidence.md) and logs
its head, so a record of the head exists outside the database: one more small job of
the same kind, on the role that already reads the ledger, without a function of its own.
It links batch after batch until caught up or LEDGER_CHAIN_EXTEND_BUDGET_S ran out
(never past the tick's own budget), so the chain keeps up with the ledger's rate
instead of a fixed number of rows a minute, and logs how long the next unlinked
transaction has waited: an error past LEDGER_CHAIN_LAG_ALERT_S, whether a backlog or an
old open transaction holding the horizon back is the cause.

Last, the tick advances the system accounts' balance checkpoints to the same horizon
(docs/ledger-model.md#system-account-balances): every minute, so the entries a system
account's balance read adds after its checkpoint stay a minute's worth. The ERP
export's tick would leave fifteen minutes of them.

And it logs how long ago a reconciliation last found the ledger clean: the daily
`ledger_reconcile` cannot raise the alert for its own absence, and this tick comes every
minute.
"""

import logging
import time

import functions_framework

from common import bootstrap, cloud_events, logs
from common.balance_checkpoints import advance
from common.config import get_settings
from common.errors import DependencyUnavailable
from common.hash_chain import extend

log = logging.getLogger("ledger.outbox_sweeper")
logs.configure_from_settings()
SWEEP_BUDGET_S = 45.0  # stop before the next tick comes
TICK_BUDGET_S = 50.0  # the sweep and the chain together; the chain still links one batch past it


@functions_framework.cloud_event
@cloud_events.pubsub_function("outbox_sweeper")
def outbox_sweeper(cloud_event):
    settings = get_settings()
    started = time.monotonic()
    # one pacer for the tick's jobs: a load that slowed the sweep slows the chain too
    pacer = bootstrap.pacer()
    try:
        result = bootstrap.relay().sweep_all(
            min_age_s=settings.outbox_sweep_min_age_s, budget_s=SWEEP_BUDGET_S, pacer=pacer
        )
        backlog = bootstrap.outbox().backlog(settings.outbox_stuck_after_s)
    except DependencyUnavailable as error:
        log.error("outbox sweep could not run", extra={"error": error.message})
        raise
    level = logging.ERROR if backlog["stuck"] else logging.INFO
    # `event` names the line for its log-based metrics (infra/terraform/monitoring.tf)
    extra = {
        "event": "outbox_sweep",
        "published": result.published,
        "failed": result.failed,
        "another_sweep": result.another_sweep,
        **backlog,
    }
    log.log(level, "outbox sweep", extra=extra)
    try:
        budget_s = min(settings.chain_extend_budget_s, TICK_BUDGET_S - (time.monotonic() - started))
        chain = extend(bootstrap.chain_store(), budget_s=max(budget_s, 0.0), pacer=pacer)
    except DependencyUnavailable as error:
        log.error("hash chain could not be extended", extra={"error": error.message})
        raise
    level = logging.ERROR if chain["lag_s"] > settings.chain_lag_alert_s else logging.INFO
    log.log(level, "hash chain extended", extra={"chain": chain})
    try:
        budget_s = TICK_BUDGET_S - (time.monotonic() - started)
        checkpoints = advance(bootstrap.checkpoint_store(), budget_s=max(budget_s, 0.0), pacer=pacer)
    except DependencyUnavailable as error:
        log.error("balance checkpoints could not advance", extra={"error": error.message})
        raise
    log.info("balance checkpoints advanced", extra={"checkpoints": checkpoints, "pacing": pacer.report()})
    try:
        reconciled_age_s = bootstrap.checkpoint_store().reconciled_age_s()
    except DependencyUnavailable as error:
        log.error("the last reconciliation's age could not be read", extra={"error": error.message})
        raise
    # `event` names the line for its log-based metric: the alert when the daily
    # reconciliation stops coming, or keeps finding the ledger broken
    log.info("ledger last reconciled", extra={"event": "ledger_reconciled", "reconciled_age_s": reconciled_age_s})
