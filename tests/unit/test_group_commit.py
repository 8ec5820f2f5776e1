"""Group commit's thread coordination, with plain functions in place of the database."""

import threading
import time

import pytest

from common.group_commit import GroupCommit


class Gate:
    """run_one blocks on the first item until opened, so later items queue up behind it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.alone: list[int] = []
        self.batches: list[list[int]] = []
        self.threads: dict[int, int] = {}

    def run_one(self, item: int) -> int:
        if not self.alone and not self.batches:
            self.open.wait(5)
        self.alone.append(item)
        self.threads[item] = threading.get_ident()
        if item < 0:
            raise ValueError(f"bad item {item}")
        return item * 10

    def run_many(self, items):
        self.batches.append(list(items))
        return [ValueError(f"bad item {i}") if i < 0 else i * 10 for i in items]


def submit_in_threads(group, items):
    results: dict[int, object] = {}

    def submit(item):
        try:
            results[item] = group.submit(item)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertions
            results[item] = error

    threads = [threading.Thread(target=submit, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, results


def wait_for_waiting(group, count):
    deadline = time.monotonic() + 5
    while len(group._waiting) < count:
        assert time.monotonic() < deadline, "items never queued"
        time.sleep(0.001)


def behind_a_busy_database(group, gate, others):
    """Item 1 goes first and blocks at the database (the gate); `others` are submitted
    and queue behind it; then the gate opens. Returns every item's outcome."""
    first, results = submit_in_threads(group, [1])
    deadline = time.monotonic() + 5
    while group._in_flight == 0:
        assert time.monotonic() < deadline, "the first item never reached the database"
        time.sleep(0.001)
    queued, more = submit_in_threads(group, others)
    wait_for_waiting(group, len(others))
    gate.open.set()
    for thread in first + queued:
        thread.join(5)
        assert not thread.is_alive(), "an item never returned"
    return {**results, **more}


def test_an_item_alone_goes_through_run_one_at_once():
    gate = Gate()
    gate.open.set()
    group = GroupCommit(gate.run_one, gate.run_many, max_batch=8, max_in_flight=1)
    assert group.submit(3) == 30
    assert gate.alone == [3] and gate.batches == []


def test_items_arriving_while_the_database_is_busy_go_together_with_their_own_outcomes():
    gate = Gate()
    group = GroupCommit(gate.run_one, gate.run_many, max_batch=8, max_in_flight=1)
    results = behind_a_busy_database(group, gate, [2, -3, 4])
    assert gate.alone == [1]
    assert sorted(gate.batches[0]) == [-3, 2, 4] and len(gate.batches) == 1
    assert results[1] == 10 and results[2] == 20 and results[4] == 40
    assert isinstance(results[-3], ValueError)
    assert (group.batches, group.batched_items) == (1, 3)


def test_a_batch_takes_at_most_max_batch_items_and_the_rest_follow():
    gate = Gate()
    group = GroupCommit(gate.run_one, gate.run_many, max_batch=2, max_in_flight=1)
    results = behind_a_busy_database(group, gate, [2, 3, 4, 5, 6])
    assert all(len(batch) <= 2 for batch in gate.batches)
    posted = sorted(gate.alone + [item for batch in gate.batches for item in batch])
    assert posted == [1, 2, 3, 4, 5, 6]  # every item exactly once
    assert results == {item: item * 10 for item in range(1, 7)}


def test_when_a_whole_batch_fails_each_item_goes_alone_in_its_own_thread():
    gate = Gate()

    def broken_many(items):
        gate.batches.append(list(items))
        raise ConnectionError("the connection dropped")

    group = GroupCommit(gate.run_one, broken_many, max_batch=8, max_in_flight=1)
    results = behind_a_busy_database(group, gate, [2, 3])
    assert results == {1: 10, 2: 20, 3: 30}
    assert sorted(gate.alone) == [1, 2, 3] and group.batches == 0
    assert len(set(gate.threads.values())) == 3  # not all posted by the batch's leader


def test_an_item_of_a_failed_batch_is_told_why_it_goes_alone():
    """So a posting whose batch was lost after it was sent knows its outcome is unknown
    should it not reach the database alone either (common/adapters/ledger_store.py)."""
    gate, told = Gate(), {}
    lost = ConnectionError("lost after the batch was sent")

    def broken_many(items):
        raise lost

    def after_failed_batch(item, batch_error):
        told[item] = batch_error
        return gate.run_one(item)

    group = GroupCommit(
        gate.run_one, broken_many, max_batch=8, max_in_flight=1, run_after_failed_batch=after_failed_batch
    )
    results = behind_a_busy_database(group, gate, [2, 3])
    assert results == {1: 10, 2: 20, 3: 30}
    assert told == {2: lost, 3: lost}


def test_an_interrupted_batch_never_leaves_an_item_waiting():
    gate = Gate()

    def interrupted(items):
        raise KeyboardInterrupt

    group = GroupCommit(gate.run_one, interrupted, max_batch=8, max_in_flight=1)
    results = behind_a_busy_database(group, gate, [2, 3])
    assert results[1] == 10 and group._in_flight == 0


def test_sizes_below_one_are_refused():
    with pytest.raises(ValueError):
        GroupCommit(lambda i: i, lambda items: items, max_batch=0, max_in_flight=1)
