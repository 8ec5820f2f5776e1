"""Ledger events as messages, and the relay's bookkeeping, over in-memory fakes."""

import json
import time
from concurrent.futures import Future
from contextlib import contextmanager

from common.adapters.pubsub_events import PubSubPublisher
from common.events import message
from common.relay import AfterCommit, Relay

EVENT = {"event_id": "42", "transaction_id": 42, "action": "usage", "asset": "IDR", "wallet_id": 7, "amount": 5}


def test_a_message_carries_the_event_id_and_orders_by_wallet():
    sent = message(EVENT)
    assert sent.attributes == {"event_id": "42", "action": "usage", "asset": "IDR"}
    assert sent.ordering_key == "wallet-7"
    assert json.loads(sent.data) == EVENT
    assert message(dict(reversed(list(EVENT.items())))).data == sent.data  # canonical bytes


class MemoryOutbox:
    def __init__(self, ids):
        self.events = {i: {**EVENT, "event_id": str(i), "transaction_id": i} for i in ids}
        self.published, self.failed = [], {}

    def pending(self, transaction_ids=None, limit=500, min_age_s=0.0):
        ids = [i for i in sorted(self.events) if i not in self.published]
        if transaction_ids is not None:
            ids = [i for i in ids if i in transaction_ids]
        return [self.events[i] for i in ids[:limit]]

    def mark_published(self, transaction_ids):
        self.published += transaction_ids

    def mark_failed(self, transaction_id, error):
        self.failed[transaction_id] = error

    @contextmanager
    def sweeping(self):
        yield True


class FlakyPublisher:
    def __init__(self, refuse=()):
        self.refuse, self.batches = set(refuse), []

    def publish(self, batch):
        self.batches.append([e["transaction_id"] for e in batch])
        ids = [e["transaction_id"] for e in batch]
        return [i for i in ids if i not in self.refuse], [(i, "unavailable") for i in ids if i in self.refuse]


def test_published_events_are_marked_and_failed_ones_stay_pending_with_their_error():
    outbox, publisher = MemoryOutbox([1, 2, 3]), FlakyPublisher(refuse={2})
    result = Relay(outbox, lambda: publisher).publish([1, 2, 3])
    assert (result.published, result.failed) == (2, 1)
    assert outbox.published == [1, 3] and outbox.failed == {2: "unavailable"}
    assert [e["transaction_id"] for e in outbox.pending()] == [2]


def test_a_sweep_publishes_the_oldest_pending_events_whatever_their_origin():
    outbox, publisher = MemoryOutbox([5, 3, 9]), FlakyPublisher()
    outbox.published = [3]
    assert Relay(outbox, lambda: publisher).sweep(limit=1).published == 1
    assert publisher.batches == [[5]]


def test_nothing_pending_builds_no_publisher():
    built = []
    assert Relay(MemoryOutbox([]), lambda: built.append(1)).sweep().published == 0
    assert built == []


def test_after_commit_relays_in_the_background_in_rounds():
    outbox = MemoryOutbox(range(1, 51))
    publisher = FlakyPublisher()
    relay = AfterCommit(Relay(outbox, lambda: publisher), batch=20)
    for transaction_id in range(1, 51):
        relay.submit(transaction_id)
    deadline = time.monotonic() + 5
    while len(outbox.published) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(outbox.published) == list(range(1, 51))
    assert max(len(batch) for batch in publisher.batches) <= 20


def test_after_commit_survives_a_failing_round():
    class Broken:
        def publish(self, batch):
            raise RuntimeError("pubsub down")

    outbox = MemoryOutbox([1, 2])
    publishers = iter([Broken(), FlakyPublisher()])
    current = {"p": next(publishers)}
    relay = AfterCommit(Relay(outbox, lambda: current["p"]), batch=10)
    relay.submit(1)
    time.sleep(0.1)
    current["p"] = next(publishers)
    relay.submit(2)
    deadline = time.monotonic() + 5
    while 2 not in outbox.published and time.monotonic() < deadline:
        time.sleep(0.01)
    assert outbox.published == [2]  # 1 stays pending for the sweeper


class RecordingFuture(Future):
    """Records how long the publisher was willing to wait for it."""

    def __init__(self, waits):
        super().__init__()
        self._waits = waits

    def result(self, timeout=None):
        self._waits.append(timeout)
        return super().result(timeout)


class FakePubSub:
    """A publisher client whose futures resolve as told: "ok", "fail" or "hang"."""

    def __init__(self, plan):
        self.plan, self.resumed, self.waits = plan, [], []

    def publish(self, topic, data, ordering_key, **attributes):
        future = RecordingFuture(self.waits)
        outcome = self.plan[json.loads(data)["transaction_id"]]
        if outcome == "ok":
            future.set_result("message-id")
        elif outcome == "fail":
            future.set_exception(RuntimeError("unavailable"))
        return future

    def resume_publish(self, topic, ordering_key):
        self.resumed.append(ordering_key)
        if len(self.resumed) > 1:
            raise RuntimeError("Ordering key is not paused.")  # as the library says when it isn't


def events(*ids):
    return [{**EVENT, "event_id": str(i), "transaction_id": i, "wallet_id": i} for i in ids]


def test_a_batch_waits_at_most_the_timeout_in_all_and_resumes_failed_keys():
    client = FakePubSub({1: "hang", 2: "hang", 3: "fail", 4: "ok", 5: "fail"})
    published, failed = PubSubPublisher(client, "topic", timeout_s=0.2).publish(events(1, 2, 3, 4, 5))
    # one deadline for the batch: once the first hang used it up, the rest get no more
    assert client.waits[0] <= 0.2 and sum(client.waits[1:]) < 0.05
    assert published == [4]
    assert [transaction_id for transaction_id, _ in failed] == [1, 2, 3, 5]
    assert "wallet-3" in client.resumed and "wallet-5" in client.resumed
