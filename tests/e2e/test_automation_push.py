"""The automation function as deployed: ledger events pushed to it from the events
topic (the subscription a module fixture creates, as Terraform does in Google Cloud;
the test stack leaves it out for the rest of the suite), and Cloud Scheduler's ticks."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.automation_support import auto_top_ups, charges, firings, rule
from tests.support import balance, http, key, new_wallet, sql


@pytest.fixture(scope="module")
def pushed_events(stack):
    name = stack.push_subscription("automation", stack.settings().events_topic)
    yield
    stack.delete_subscription(name)


def eventually(check: Callable[[], Any], within_s: float = 60) -> Any:
    """Pub/Sub delivers when it does: wait for the outcome, not for a time."""
    deadline = time.monotonic() + within_s
    while not (found := check()):
        assert time.monotonic() < deadline, "the automatic action did not happen"
        time.sleep(0.2)
    return found


def use(stack, wallet_id: int, amount: int) -> None:
    body = {"wallet_id": wallet_id, "asset": "TST", "amount": amount, "usage_id": key("u"), "product": "gpu"}
    idempotency_key = key()
    for _ in range(50):
        response = http(stack, "usage", body, idempotency_key=idempotency_key)
        if response.status_code != 409:  # wallet_locked: 32 usages queue for one wallet's lock
            assert response.status_code == 201, response.text
            return
    raise AssertionError("the wallet stayed locked")


def test_usages_over_http_that_cross_the_threshold_top_up_once_through_the_pushed_events(stack, pushed_events):
    wallet, funding = new_wallet(stack, funded=1000), key("card")
    # below the threshold from the first usage on, and never back above it (a top-up
    # of 5 can't lift it): one crossing, however the 32 events interleave
    rule_id = rule(stack, "auto_topup", wallet, threshold=990, amount=5, funding_ref=funding)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda _: use(stack, wallet, 20), range(32)))
    (posted,) = eventually(lambda: auto_top_ups(stack, rule_id))
    # the auto top-up's own event goes out too, and triggers nothing
    eventually(
        lambda: sql(stack, "SELECT published_at FROM ledger.outbox WHERE transaction_id = :t", t=posted[0])[0][0]
    )
    assert len(charges(stack, funding)) == 1 and firings(stack, rule_id) == ["finished"]
    assert balance(stack, wallet) == 1000 - 32 * 20 + 5


def test_a_recurring_allocation_tick_delivered_twice_allocates_once(stack):
    def wallet(**fields: Any) -> int:
        body = {"owner_id": key("owner"), "asset": "TST", "model": "enterprise", **fields}
        created = http(stack, "wallets", body, path="/wallets")
        assert created.status_code == 201, created.text
        return created.json()["wallet"]["id"]

    pool = wallet()
    members = [wallet(parent_id=pool), wallet(parent_id=pool)]
    http(stack, "topup", {"wallet_id": pool, "asset": "TST", "amount": 500, "external_ref": key("pay")}, key())
    rule_id = rule(stack, "recurring_allocation", pool, amount=100, period="day", member_ids=members)
    tick = stack.settings().automation_tick_topic
    try:
        stack.publish(tick)
        stack.publish(tick)
        eventually(lambda: firings(stack, rule_id) == ["finished"])
    finally:
        sql(stack, "UPDATE ledger.automation_rules SET status = 'deleted' WHERE id = :r", r=rule_id)
    assert [balance(stack, m) for m in members] == [100, 100] and balance(stack, pool) == 300
