"""The automation engine's use cases: judge a ledger event's wallets against their
threshold rules, and run the recurring allocations on Cloud Scheduler's tick
(docs/automation.md).

Whether a rule acts is decided by ledger.automation_fire, atomically, on the wallet's
balance at that moment; the firing it records is unique per (rule, trigger), and every
charge and posting a firing makes carries a key derived from that pair. So a
redelivered event or a repeated tick finds its firing: done, it does nothing; still in
flight, it carries on with the same keys, and the provider and the ledger each answer
what they did the first time.

A dependency that is down raises DependencyUnavailable after every rule had its turn,
so the delivery fails and Pub/Sub brings it again. A refusal that can never succeed (a
declined charge, a refused posting, a malformed provider answer, any other error of
one firing) is recorded on the firing, never retried, and never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from common.automation import (
    RULE_MARK,
    Firing,
    Rule,
    allocate_key,
    caller_for,
    event_trigger,
    is_auto_top_up,
    period_start,
    period_trigger,
    topup_key,
    touched_wallets,
)
from common.errors import DependencyUnavailable, InProgress, LedgerError
from common.payments import ProviderError

if TYPE_CHECKING:
    from common.adapters.automation_store import AutomationStore
    from common.adapters.pubsub_notices import PubSubNotices
    from common.payments import PaymentProvider
    from common.service import LedgerService

log = logging.getLogger("ledger.automation")
TRANSIENT = (DependencyUnavailable, InProgress)  # tried again by the next delivery


class AutomationEngine:
    def __init__(
        self,
        store: AutomationStore,
        service: LedgerService,
        payments: Callable[[], PaymentProvider],
        notices: Callable[[], PubSubNotices],
        stalled_after_s: float = 120.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.service = service
        self._payments = payments  # built on first use: most events charge nothing
        self._notices = notices
        self._stalled_after_s = stalled_after_s
        self._clock = clock

    def on_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Every active threshold rule of the customer wallets the event moved. An auto
        top-up's own posting triggers no auto top-up (it may still re-arm one, and is
        judged against low-balance rules); an allocation the automation made does."""
        trigger = event_trigger(int(event["transaction_id"]))
        own = is_auto_top_up(event)
        rules = [
            rule
            for rule in self.store.threshold_rules(touched_wallets(event))
            if not (own and rule.kind == "auto_topup")
        ]
        return self._run([(rule, trigger) for rule in rules])

    def on_tick(self) -> dict[str, Any]:
        """The recurring allocations whose current period has no firing yet, and any
        firing left in flight by a delivery that never came back."""
        now = self._clock()
        due = [(rule, period_trigger(period_start(rule.period or "", now))) for rule in self.store.recurring_rules()]
        stalled = [(rule, trigger) for trigger, rule in self.store.stalled(self._stalled_after_s)]
        return self._run(due + stalled)

    def _run(self, work: list[tuple[Rule, str]]) -> dict[str, Any]:
        """Each firing on its own: a transient error leaves it in flight for the next
        delivery, which this one then asks for (by raising, once every other had its
        turn); any other error can never succeed, so the firing is failed for an
        operator, and neither blocks the rest nor the wallet's next auto top-up."""
        acted, failure = [], None
        for rule, trigger in work:
            firing = None
            try:
                firing = self.store.fire(rule.id, trigger)
                if firing.act:
                    self._act(rule, trigger, firing)
                    acted.append({"rule_id": rule.id, "kind": rule.kind, "trigger": trigger})
            except TRANSIENT as error:
                log.warning(
                    "automatic action to retry", extra={"rule_id": rule.id, "trigger": trigger, "error": error.message}
                )
                failure = failure or error
            except Exception as error:  # noqa: BLE001 - final for this firing, whatever it is
                try:
                    self._give_up(rule, trigger, firing, error)
                except TRANSIENT as unrecorded:
                    failure = failure or unrecorded  # failed next time, then
        if failure is not None:
            raise failure
        return {"rules": len(work), "acted": acted}

    def _give_up(self, rule: Rule, trigger: str, firing: Firing | None, error: Exception) -> None:
        reason = str(error) if isinstance(error, ProviderError) else f"{type(error).__name__}: {error}"
        log.error(
            "automatic action failed for good",
            exc_info=not isinstance(error, ProviderError),  # a bug's traceback, not the provider's fault
            extra={"rule_id": rule.id, "trigger": trigger, "reason": reason},
        )
        if firing is None or firing.id is None or not firing.act:
            return
        if rule.kind == "auto_topup":  # no top-up comes: the customer hears why
            self._notify(rule, firing.id, trigger, "auto_topup_failed", {"reason": reason, "amount": rule.amount})
        self.store.record(firing.id, "failed", detail={"reason": reason[:500]})

    def _act(self, rule: Rule, trigger: str, firing: Firing) -> None:
        assert firing.id is not None
        if rule.kind == "auto_topup":
            self._top_up(rule, trigger, firing)
        elif rule.kind == "low_balance":
            self._notify(rule, firing.id, trigger, "low_balance", {"threshold": rule.threshold})
            self.store.record(firing.id, "finished")
        else:
            self._allocate(rule, trigger, firing.id)

    def _top_up(self, rule: Rule, trigger: str, firing: Firing) -> None:
        from common.ledger.commands import TopUp

        assert firing.id is not None and rule.funding_ref is not None and rule.amount is not None
        firing_id, key = firing.id, topup_key(rule.id, trigger)
        if firing.status == "charged" and firing.charge_id:
            # An earlier delivery charged and recorded it: post with that charge, never
            # charge again. The provider keeps keys for a while only (a day, say): a
            # carry-on after that would charge anew, and the ledger credits only once.
            charge_id = firing.charge_id
        else:
            # started: whether it charged is unknown, and the same key finds the charge
            charge = self._payments().charge(key, rule.funding_ref, rule.amount, rule.asset)
            if not charge.confirmed:
                details = {"charge_id": charge.charge_id, "reason": charge.reason, "amount": rule.amount}
                self._notify(rule, firing_id, trigger, "auto_topup_declined", details)
                self.store.record(firing_id, "declined", charge.charge_id, detail={"reason": charge.reason})
                log.warning("auto top-up declined", extra={"rule_id": rule.id, "trigger": trigger, **details})
                return
            charge_id = charge.charge_id
            self.store.record(firing_id, "charged", charge_id)
        cmd = TopUp(
            wallet_id=rule.wallet_id,
            asset=rule.asset,
            amount=rule.amount,
            external_ref=charge_id,
            metadata={RULE_MARK: rule.id, "trigger": trigger},
        )
        try:
            outcome = self.service.top_up(caller_for(rule, key), cmd, key)
        except TRANSIENT:
            raise
        except LedgerError as error:
            self._failed(rule, trigger, firing_id, error.code, charge_id)
            return
        if outcome.status >= 400:  # a refusal stored under the key, replayed
            self._failed(rule, trigger, firing_id, outcome.body["error"]["code"], charge_id)
            return
        self.store.record(firing_id, "finished", transaction_id=outcome.body["transaction"]["id"])

    def _failed(self, rule: Rule, trigger: str, firing_id: int, code: str, charge_id: str) -> None:
        # Charged but not credited (the wallet was frozen meanwhile, say): an operator
        # refunds the charge or credits it; never retried on its own.
        self.store.record(firing_id, "failed", detail={"code": code, "charge_id": charge_id})
        log.error(
            "auto top-up charged but refused by the ledger",
            extra={"rule_id": rule.id, "trigger": trigger, "code": code, "charge_id": charge_id},
        )

    def _allocate(self, rule: Rule, trigger: str, firing_id: int) -> None:
        from common.ledger.commands import Allocate

        assert rule.amount is not None
        members = list(rule.member_ids) if rule.member_ids is not None else self.store.children(rule.wallet_id)
        caller = caller_for(rule, f"auto-allocate:{rule.id}:{trigger}")
        refused: dict[str, str] = {}
        failure = None
        for member in members:
            cmd = Allocate(
                wallet_id=member,
                asset=rule.asset,
                amount=rule.amount,
                metadata={RULE_MARK: rule.id, "trigger": trigger},
            )
            try:
                outcome = self.service.allocate(caller, cmd, allocate_key(rule.id, trigger, member))
            except TRANSIENT as error:
                failure = failure or error  # the others still get theirs; this one next time
                continue
            except LedgerError as error:
                refused[str(member)] = error.code
                continue
            if outcome.status >= 400:
                refused[str(member)] = outcome.body["error"]["code"]
        if failure is not None:
            raise failure
        self.store.record(firing_id, "finished", detail={"members": len(members), "refused": refused})
        if refused:
            log.warning("recurring allocation refused for some members", extra={"rule_id": rule.id, "refused": refused})

    def _notify(self, rule: Rule, firing_id: int, trigger: str, kind: str, details: dict[str, Any]) -> None:
        """At least once per firing; `notice_id` (the firing's) lets a consumer drop the
        copy a retried delivery may send."""
        notice = {
            "notice_id": str(firing_id),
            "kind": kind,
            "tenant": rule.tenant,
            "wallet_id": rule.wallet_id,
            "asset": rule.asset,
            "rule_id": rule.id,
            "trigger": trigger,
            **details,
        }
        attributes = {
            "tenant": rule.tenant,
            "wallet_id": str(rule.wallet_id),
            "rule_id": str(rule.id),
            "kind": kind,
            "notice_id": str(firing_id),
        }
        self._notices().send(notice, attributes)
