"""Every ledger transaction writes its event in the same database transaction, and the
relay publishes it to Pub/Sub once it can: nothing is lost while Pub/Sub is down."""

import time
import uuid

import pytest

from common import bootstrap
from common.config import get_settings
from common.errors import Refused
from common.ledger import commands
from emulators.stack import PROJECT
from tests.support import CALLER, key, ledger_service, new_wallet, owner, sql, system_account


def outbox_row(stack, transaction_id):
    rows = sql(
        stack,
        "SELECT event, published_at IS NOT NULL, attempts, last_error"
        " FROM ledger.outbox_events WHERE transaction_id = :t",
        t=transaction_id,
    )
    return rows[0] if rows else None


@pytest.fixture
def subscription(stack):
    """A pull subscription on the events topic, made for one test."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(PROJECT, f"test-{uuid.uuid4().hex[:12]}")

    def create():
        stack.create_topics()
        subscriber.create_subscription(
            request={"name": path, "topic": f"projects/{PROJECT}/topics/{get_settings().events_topic}"}
        )

    sweep_everything()  # what earlier tests left pending goes out before this test listens
    create()
    yield subscriber, path, create
    subscriber.close()


def sweep_everything(budget_s=60):
    """Sweep until nothing is pending, as the scheduled sweeper would over its runs
    (right after Pub/Sub comes back, the client may need a few seconds to reconnect)."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        result = bootstrap.relay().sweep(limit=500)
        if not result.published and not result.failed:
            return
        if not result.published:
            time.sleep(1)


def pull_events(subscriber, path, wanted, budget_s=60):
    """Event ids (attribute) of messages pulled until `wanted` ids were seen, with repeats."""
    seen = []
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 500}, timeout=5)
        for received in response.received_messages:
            seen.append(received.message.attributes["event_id"])
        if response.received_messages:
            subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
        if set(wanted) <= set(seen):
            break
    return seen


def test_each_posting_writes_one_event_naming_every_wallet_and_owner(stack):
    service = bootstrap.service()
    payer, payee = new_wallet(stack, funded=50, owner_id=key("payer")), new_wallet(stack, owner_id=key("payee"))
    outcome = service.transfer(
        CALLER, commands.Transfer(from_wallet_id=payer, to_wallet_id=payee, asset="TST", amount=20), key()
    )
    transaction = outcome.body["transaction"]
    event, _, _, _ = outbox_row(stack, transaction["id"])
    assert event["event_id"] == str(transaction["id"]) and event["action"] == "transfer"
    assert event["effective_at"] == transaction["effective_at"]
    owners = dict(sql(stack, "SELECT id, owner_id FROM ledger.wallets WHERE id IN (:a, :b)", a=payer, b=payee))
    assert [(leg["wallet_id"], leg["owner_id"], leg["amount"]) for leg in event["legs"]] == [
        (payer, owners[payer], -20),
        (payee, owners[payee], 20),
    ]


def test_a_refused_posting_leaves_no_event(stack):
    wallet = new_wallet(stack, funded=5)
    before = sql(stack, "SELECT count(*) FROM ledger.outbox")[0][0]
    with pytest.raises(Refused):
        bootstrap.service().usage(
            CALLER, commands.Usage(wallet_id=wallet, asset="TST", amount=6, usage_id=key("u"), product="p"), key()
        )
    assert sql(stack, "SELECT count(*) FROM ledger.outbox")[0][0] == before


def test_an_event_exists_only_if_its_posting_commits(stack):
    """Written by the same database transaction: a rollback after the legs went in
    takes the event with it."""
    wallet, funding = new_wallet(stack), system_account(stack, "TST", "funding")
    con = owner(stack)
    try:
        con.run("BEGIN")
        transaction_id = con.run(
            "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id)"
            " VALUES (:k, 'h', 'topup', 'TST', 5, :w) RETURNING id",
            k=key(),
            w=wallet,
        )[0][0]
        con.run(
            "INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount)"
            " VALUES (:t, :f, 'TST', -5), (:t, :w, 'TST', 5)",
            t=transaction_id,
            f=funding,
            w=wallet,
        )
        assert con.run("SELECT count(*) FROM ledger.outbox WHERE transaction_id = :t", t=transaction_id) == [[1]]
        con.run("ROLLBACK")
    finally:
        con.close()
    assert outbox_row(stack, transaction_id) is None


def test_the_relay_publishes_with_the_event_id_and_marks_the_row(stack, subscription):
    subscriber, path, _ = subscription
    wallet = new_wallet(stack)
    outcome = bootstrap.service().bonus(CALLER, commands.Bonus(wallet_id=wallet, asset="TST", amount=3), key())
    transaction_id = outcome.body["transaction"]["id"]
    bootstrap.relay().publish([transaction_id])
    assert str(transaction_id) in pull_events(subscriber, path, [str(transaction_id)])
    assert outbox_row(stack, transaction_id)[1] is True


def test_a_failing_after_commit_hook_leaves_the_posting_answered(stack):
    def broken(transaction_id):
        raise RuntimeError("can't start new thread")

    service = ledger_service(committed=broken)
    wallet, k = new_wallet(stack), key()
    outcome = service.top_up(CALLER, commands.TopUp(wallet_id=wallet, asset="TST", amount=4, external_ref=key("r")), k)
    assert outcome.status == 201 and not outcome.replayed
    assert outbox_row(stack, outcome.body["transaction"]["id"])[1] is False  # pending, for the sweep


def test_100_actions_posted_while_pubsub_is_down_arrive_after_the_scheduled_sweep_once_each(stack, subscription):
    subscriber, path, recreate = subscription
    # No after-commit relay here: the test's own relay round is the one that meets the
    # outage, so the sweep after it is what publishes.
    service = ledger_service()
    alice, bob = new_wallet(stack, funded=1_000), new_wallet(stack)
    actions = [
        lambda: service.top_up(
            CALLER, commands.TopUp(wallet_id=alice, asset="TST", amount=3, external_ref=key("r")), key()
        ),
        lambda: service.bonus(CALLER, commands.Bonus(wallet_id=bob, asset="TST", amount=2), key()),
        lambda: service.usage(
            CALLER, commands.Usage(wallet_id=alice, asset="TST", amount=1, usage_id=key("u"), product="p"), key()
        ),
        lambda: service.transfer(
            CALLER, commands.Transfer(from_wallet_id=alice, to_wallet_id=bob, asset="TST", amount=1), key()
        ),
    ]
    stack.stop_service("pubsub")
    try:
        ids = [actions[n % 4]().body["transaction"]["id"] for n in range(100)]
        bootstrap.relay().publish(ids[:10])  # what the after-commit relay tries: it fails, and says so
    finally:
        stack.start_service("pubsub")  # with the scheduler topics and their push subscriptions
    tried = [outbox_row(stack, i) for i in ids[:10]]
    assert all(not published and attempts >= 1 and last_error for _, published, attempts, last_error in tried)
    assert not any(outbox_row(stack, i)[1] for i in ids)

    recreate()  # the emulator forgot this test's subscription when it stopped
    # Cloud Scheduler's minute tick, pushed into the sweeper; sooner here, since a sweep
    # leaves events younger than LEDGER_OUTBOX_SWEEP_MIN_AGE_S to the after-commit relay
    deadline = time.monotonic() + 90
    while not all(outbox_row(stack, i)[1] for i in ids):
        assert time.monotonic() < deadline, "the scheduled sweep did not publish every event"
        stack.publish(get_settings().outbox_sweep_tick_topic)
        time.sleep(3)

    # A consumer applies each event once, by its event id, however often Pub/Sub
    # delivers it (the failed round above may still land late, as a duplicate).
    applied: dict[str, dict] = {}
    for event_id in pull_events(subscriber, path, [str(i) for i in ids]):
        applied.setdefault(event_id, {})
    assert {str(i) for i in ids} <= set(applied)
    amounts = dict(
        sql(stack, "SELECT id, amount FROM ledger.transactions WHERE id = ANY(CAST(:ids AS bigint[]))", ids=ids)
    )
    assert len(amounts) == 100 and sum(amounts.values()) == 25 * (3 + 2 + 1 + 1)


def test_the_sweep_leaves_events_younger_than_its_minimum_age_to_the_relay(stack, subscription):
    service = ledger_service()  # no relay
    wallet = new_wallet(stack)
    outcome = service.bonus(CALLER, commands.Bonus(wallet_id=wallet, asset="TST", amount=1), key())
    transaction_id = outcome.body["transaction"]["id"]
    bootstrap.relay().sweep(min_age_s=60)
    assert outbox_row(stack, transaction_id)[1] is False  # young: the relay's to publish
    sweep_everything()  # min age 0
    assert outbox_row(stack, transaction_id)[1] is True
