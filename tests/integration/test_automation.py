"""The automation engine in-process against the real stack (Postgres, Redis, Firestore,
the Pub/Sub emulator and the fake payment provider): auto top-ups, low-balance notices
and recurring allocations, each once per crossing or period, whatever is redelivered."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pg8000.exceptions import DatabaseError

from common import bootstrap
from common.adapters.automation_store import AutomationStore
from common.automation import event_trigger, topup_key
from common.automation_engine import AutomationEngine
from common.errors import DependencyUnavailable, InProgress
from common.ledger import commands
from tests.automation_support import auto_top_ups, charges, firings, provider, rule, stall
from tests.support import CALLER, balance, key, login_pool, new_wallet, pull_messages, pull_subscription, sql


@pytest.fixture(scope="module")
def automation_pool(stack):
    pool = login_pool(stack, *stack.login("automation"))
    yield pool
    pool.close()


@pytest.fixture
def engine(stack, automation_pool):
    # the function's own store (role ledger_automation), the service as the functions post
    return AutomationEngine(
        AutomationStore(automation_pool), bootstrap.service(), bootstrap.payment_provider, bootstrap.notices
    )


@pytest.fixture(scope="module")
def notices(stack):
    """A pull subscription on the notifications topic: what the engine sent."""
    name = pull_subscription(stack, stack.settings().notifications_topic, "notices")
    yield name
    stack.delete_subscription(name)


def notices_of(stack, subscription: str, rule_id: int) -> list[dict[str, Any]]:
    _seen.extend(pull_messages(stack, subscription))
    return [notice for notice in _seen if notice["rule_id"] == rule_id]


_seen: list[dict[str, Any]] = []


def event(stack, transaction_id: int) -> dict[str, Any]:
    return sql(stack, "SELECT event FROM ledger.outbox_events WHERE transaction_id = :t", t=transaction_id)[0][0]


def use(service, wallet_id: int, amount: int) -> int:
    cmd = commands.Usage(wallet_id=wallet_id, asset="TST", amount=amount, usage_id=key("u"), product="gpu")
    idempotency_key = key()
    for _ in range(50):  # 32 usages of one wallet queue for its lock: more than it lets wait
        try:
            return service.usage(CALLER, cmd, idempotency_key).body["transaction"]["id"]
        except InProgress:
            continue
    raise AssertionError("the wallet stayed locked")


def top_up(service, wallet_id: int, amount: int) -> int:
    cmd = commands.TopUp(wallet_id=wallet_id, asset="TST", amount=amount, external_ref=key("pay"))
    return service.top_up(CALLER, cmd, key()).body["transaction"]["id"]


def test_under_32_concurrent_usages_that_cross_the_threshold_the_auto_top_up_fires_once(stack, engine):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=1000)
    # below the threshold from the first usage on, and never back above it (a top-up
    # of 5 can't lift it): one crossing, however the 32 events interleave
    rule_id = rule(stack, "auto_topup", wallet, threshold=990, amount=5, funding_ref=funding)

    def use_and_handle_its_event(_: int) -> None:
        engine.on_event(event(stack, use(service, wallet, 20)))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(use_and_handle_its_event, range(32)))
    posted = auto_top_ups(stack, rule_id)
    assert len(charges(stack, funding)) == 1 and len(posted) == 1
    assert posted[0][1] == 5 and posted[0][2] == charges(stack, funding)[0]["charge_id"]
    assert firings(stack, rule_id) == ["finished"]
    assert balance(stack, wallet) == 1000 - 32 * 20 + 5
    # the auto top-up's own event, and every event again: nothing more
    for transaction_id in [posted[0][0]]:
        assert engine.on_event(event(stack, transaction_id))["acted"] == []
    assert len(charges(stack, funding)) == 1 and len(auto_top_ups(stack, rule_id)) == 1


def test_a_redelivered_event_fires_nothing_and_one_left_in_flight_charges_once(stack, engine):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=100)
    rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
    below = event(stack, use(service, wallet, 60))
    provider(stack, funding_ref=funding, fail_next=1)  # the provider is down for this delivery
    with pytest.raises(DependencyUnavailable):
        engine.on_event(below)
    assert firings(stack, rule_id) == ["started"] and balance(stack, wallet) == 40
    acted = engine.on_event(below)["acted"]  # Pub/Sub's redelivery carries the firing on
    assert [a["rule_id"] for a in acted] == [rule_id]
    assert engine.on_event(below)["acted"] == []  # and once more: it is done
    assert len(charges(stack, funding)) == 1 and len(auto_top_ups(stack, rule_id)) == 1
    assert firings(stack, rule_id) == ["finished"] and balance(stack, wallet) == 540


def test_a_declined_charge_posts_nothing_notifies_and_is_not_retried(stack, engine, notices):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=100)
    rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
    provider(stack, funding_ref=funding, mode="decline")
    engine.on_event(event(stack, use(service, wallet, 60)))
    engine.on_event(event(stack, use(service, wallet, 10)))  # still below: the crossing fired already
    assert firings(stack, rule_id) == ["declined"] and auto_top_ups(stack, rule_id) == []
    assert balance(stack, wallet) == 30 and len(charges(stack, funding)) == 1
    (notice,) = notices_of(stack, notices, rule_id)
    assert notice["kind"] == "auto_topup_declined" and notice["reason"] == "card_declined"
    assert notice["wallet_id"] == wallet and notice["tenant"] == "tests"


def test_a_firing_left_charged_posts_its_charge_and_never_charges_again(stack, engine):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=100)
    rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
    trigger = event_trigger(use(service, wallet, 60))
    # a delivery decided, charged and recorded it, then was lost before the top-up
    firing = engine.store.fire(rule_id, trigger)
    charge = bootstrap.payment_provider().charge(topup_key(rule_id, trigger), funding, 500, "TST")
    engine.store.record(firing.id, "charged", charge.charge_id)
    stall(stack, rule_id)
    provider(stack, funding_ref=funding, forget_keys=True)  # days later: the key is gone
    engine.on_tick()
    assert [c["charge_id"] for c in charges(stack, funding)] == [charge.charge_id]
    assert [row[2] for row in auto_top_ups(stack, rule_id)] == [charge.charge_id]
    assert firings(stack, rule_id) == ["finished"] and balance(stack, wallet) == 540


def test_a_malformed_provider_answer_fails_its_firing_and_the_tick_goes_on(stack, engine, notices):
    service = bootstrap.service()
    stalled = []
    for answer in ({"status": "declined"}, None):  # no charge_id; then a good provider
        funding, wallet = key("card"), new_wallet(stack, funded=100)
        rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
        engine.store.fire(rule_id, event_trigger(use(service, wallet, 60)))  # then the delivery was lost
        stall(stack, rule_id)
        provider(stack, funding_ref=funding, answer=answer)
        stalled.append((rule_id, wallet))
    (bad, bad_wallet), (good, good_wallet) = stalled
    engine.on_tick()  # the bad one first (the older firing), and no redelivery asked for
    engine.on_tick()
    reason = "the payment provider's declined answer has no usable charge_id"
    recorded = sql(stack, "SELECT detail ->> 'reason' FROM ledger.automation_firings WHERE rule_id = :r", r=bad)
    assert firings(stack, bad) == ["failed"] and recorded == [[reason]]
    assert auto_top_ups(stack, bad) == [] and balance(stack, bad_wallet) == 40
    (notice,) = notices_of(stack, notices, bad)
    assert (notice["kind"], notice["reason"]) == ("auto_topup_failed", reason)
    assert firings(stack, good) == ["finished"] and balance(stack, good_wallet) == 540


def test_an_auto_top_ups_own_event_never_triggers_another(stack, engine):
    service = bootstrap.service()
    wallet = new_wallet(stack, funded=1000)
    rule_id = rule(stack, "auto_topup", wallet, threshold=500, amount=50, funding_ref=key("card"))
    engine.on_event(event(stack, use(service, wallet, 900)))  # 100: fires, and tops up to 150
    (own,) = auto_top_ups(stack, rule_id)
    # re-armed (as a resume does) while still below its threshold: any other event
    # would fire it again, its own top-up's event must not
    sql(stack, "UPDATE ledger.automation_rules SET armed = true WHERE id = :r", r=rule_id)
    assert engine.on_event(event(stack, own[0]))["acted"] == []
    assert len(auto_top_ups(stack, rule_id)) == 1 and balance(stack, wallet) == 150


def test_a_usage_with_forged_automation_metadata_still_triggers_the_auto_top_up(stack, engine):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=100)
    rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
    forged = {"automation_rule_id": rule_id, "trigger": "event:1"}
    cmd = commands.Usage(wallet_id=wallet, asset="TST", amount=60, usage_id=key("u"), product="gpu", metadata=forged)
    usage = service.usage(CALLER, cmd, key()).body["transaction"]["id"]
    assert [a["rule_id"] for a in engine.on_event(event(stack, usage))["acted"]] == [rule_id]
    assert len(charges(stack, funding)) == 1 and balance(stack, wallet) == 540


def test_a_pool_drained_by_its_recurring_allocations_gets_its_auto_top_up(stack, engine):
    service, funding = bootstrap.service(), key("card")

    def wallet(parent: int | None = None) -> int:
        cmd = commands.CreateWallet(owner_id=key("owner"), asset="TST", model="enterprise", parent_id=parent)
        return service.create_wallet(CALLER, cmd)["id"]

    pool = wallet()
    members = [wallet(pool), wallet(pool)]
    top_up(service, pool, 1000)
    top_up_rule = rule(stack, "auto_topup", pool, threshold=900, amount=500, funding_ref=funding)
    allocation = rule(stack, "recurring_allocation", pool, amount=100, period="day", member_ids=members)
    try:
        engine.on_tick()  # the pool falls to 800: only the automation's own allocations moved it
    finally:
        sql(stack, "UPDATE ledger.automation_rules SET status = 'deleted' WHERE id = :r", r=allocation)
    for allocated in auto_top_ups(stack, allocation):  # the allocations' events, as pushed
        engine.on_event(event(stack, allocated[0]))
    assert firings(stack, top_up_rule) == ["finished"] and len(charges(stack, funding)) == 1
    assert balance(stack, pool) == 1000 - 200 + 500


def test_a_late_event_is_judged_by_the_balance_now(stack, engine):
    service, funding = bootstrap.service(), key("card")
    wallet = new_wallet(stack, funded=100)
    rule_id = rule(stack, "auto_topup", wallet, threshold=50, amount=500, funding_ref=funding)
    late = event(stack, use(service, wallet, 60))  # its legs say 40, below the threshold...
    top_up(service, wallet, 100)  # ...but the wallet is at 140 when it arrives
    assert engine.on_event(late)["acted"] == []
    assert firings(stack, rule_id) == [] and charges(stack, funding) == []


def test_a_low_balance_notice_is_sent_once_per_crossing(stack, engine, notices):
    service = bootstrap.service()
    wallet = new_wallet(stack, funded=1000)
    rule_id = rule(stack, "low_balance", wallet, threshold=500)
    engine.on_event(event(stack, use(service, wallet, 600)))  # crossed: 400
    engine.on_event(event(stack, use(service, wallet, 100)))  # still below: 300
    assert len(notices_of(stack, notices, rule_id)) == 1
    engine.on_event(event(stack, top_up(service, wallet, 700)))  # back above (1000): re-armed
    engine.on_event(event(stack, use(service, wallet, 800)))  # crossed again: 200
    sent = notices_of(stack, notices, rule_id)
    assert [n["kind"] for n in sent] == ["low_balance", "low_balance"] and firings(stack, rule_id) == ["finished"] * 2
    assert {n["wallet_id"] for n in sent} == {wallet}


def test_a_recurring_allocation_tick_delivered_twice_allocates_once(stack, engine):
    service = bootstrap.service()

    def wallet(parent: int | None = None) -> int:
        cmd = commands.CreateWallet(owner_id=key("owner"), asset="TST", model="enterprise", parent_id=parent)
        return service.create_wallet(CALLER, cmd)["id"]

    pool = wallet()
    members = [wallet(pool), wallet(pool), wallet(pool)]
    top_up(service, pool, 1000)
    listed = rule(stack, "recurring_allocation", pool, amount=100, period="month", member_ids=members[:2])
    every_child = rule(stack, "recurring_allocation", pool, amount=10, period="day")
    try:
        engine.on_tick()
        engine.on_tick()  # the same tick again (or the next minute's, in the same period)
    finally:
        done = "UPDATE ledger.automation_rules SET status = 'deleted' WHERE id IN (:a, :b)"
        sql(stack, done, a=listed, b=every_child)
    assert [balance(stack, m) for m in members] == [110, 110, 10] and balance(stack, pool) == 1000 - 230
    assert firings(stack, listed) == ["finished"] and firings(stack, every_child) == ["finished"]


def test_the_database_holds_one_auto_top_up_of_a_wallet_in_flight(stack):
    wallet = new_wallet(stack)
    rules = [rule(stack, "auto_topup", wallet, threshold=10, amount=10, funding_ref=key("card")) for _ in range(2)]
    insert = (
        "INSERT INTO ledger.automation_firings (rule_id, trigger, kind, wallet_id)"
        " VALUES (:r, 'event:1', 'auto_topup', :w)"
    )
    sql(stack, insert, r=rules[0], w=wallet)
    with pytest.raises(DatabaseError, match="automation_firings_one_topup_in_flight"):
        sql(stack, insert, r=rules[1], w=wallet)


def test_a_charge_that_timed_out_is_found_by_its_key_and_charged_once(stack):
    from common.adapters.payments_http import HttpPaymentProvider

    funding, settings = key("card"), stack.settings()
    impatient = HttpPaymentProvider(settings.payment_provider_url, settings.payment_provider_token, timeout_s=0.2)
    provider(stack, funding_ref=funding, delay_s=1)  # charges, then answers too late
    with pytest.raises(DependencyUnavailable):
        impatient.charge("auto-topup:1:event:1", funding, 100, "TST")
    provider(stack, funding_ref=funding, delay_s=0)
    charge = impatient.charge("auto-topup:1:event:1", funding, 100, "TST")
    assert charge.confirmed and [c["charge_id"] for c in charges(stack, funding)] == [charge.charge_id]
