"""The idempotency protocol over an in-memory record store (no Firestore)."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import DependencyUnavailable, InProgress, InvalidRequest, Refused
from common.idempotency import Idempotency, Outcome, fingerprint, validate_key


class MemoryStore:
    def __init__(self):
        self.records = {}
        self.lock = threading.Lock()

    def create(self, doc_id, record):
        with self.lock:
            if doc_id in self.records:
                return False
            self.records[doc_id] = dict(record)
            return True

    def get(self, doc_id):
        with self.lock:
            record = self.records.get(doc_id)
            return dict(record) if record else None

    def complete(self, doc_id, fields):
        with self.lock:
            self.records.setdefault(doc_id, {}).update(fields)  # a merge, as in Firestore

    def release(self, doc_id):
        with self.lock:
            self.records.pop(doc_id, None)


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 24, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def clock():
    return Clock()


def make(store, clock, **overrides):
    settings = {"ttl_s": 3600, "wait_s": 0.5, "lease_s": 30, "clock": clock, **overrides}
    return Idempotency(store, **settings)


def test_first_request_runs_and_a_repeat_replays_without_running(store, clock):
    calls = []
    idem = make(store, clock)

    def action():
        calls.append(1)
        return Outcome(201, {"n": len(calls)})

    first = idem.run("k", "fp", action)
    again = idem.run("k", "fp", action)
    assert (first.status, first.body, first.replayed) == (201, {"n": 1}, False)
    assert (again.status, again.body, again.replayed) == (201, {"n": 1}, True)
    assert len(calls) == 1


def test_same_key_different_request_is_refused(store, clock):
    idem = make(store, clock)
    idem.run("k", "fp-1", lambda: Outcome(201, {}))
    with pytest.raises(Refused) as refused:
        idem.run("k", "fp-2", lambda: Outcome(201, {}))
    assert refused.value.code == "idempotency_key_reused"


def test_business_refusals_are_sticky(store, clock):
    idem = make(store, clock)
    with pytest.raises(Refused):
        idem.run("k", "fp", lambda: (_ for _ in ()).throw(Refused("no", code="insufficient_funds")))
    replay = idem.run("k", "fp", lambda: Outcome(201, {"surprise": True}))
    assert replay.status == 422 and replay.body["error"]["code"] == "insufficient_funds" and replay.replayed


@pytest.mark.parametrize("error", [DependencyUnavailable("down"), InvalidRequest("bad"), RuntimeError("bug")])
def test_failures_that_say_nothing_about_the_request_release_the_key(store, clock, error):
    idem = make(store, clock)
    with pytest.raises(type(error)):
        idem.run("k", "fp", lambda: (_ for _ in ()).throw(error))
    assert store.records == {}
    assert idem.run("k", "fp", lambda: Outcome(201, {"ok": True})).body == {"ok": True}


def test_in_progress_past_the_wait_is_a_conflict(store, clock):
    idem = make(store, clock, wait_s=0.05)
    store.create(
        __import__("hashlib").sha256(b"k").hexdigest(),
        {
            "state": "in_progress",
            "fingerprint": "fp",
            "lease_until": clock.now + timedelta(seconds=30),
            "expire_at": clock.now + timedelta(hours=1),
        },
    )
    with pytest.raises(InProgress) as conflict:
        idem.run("k", "fp", lambda: Outcome(201, {}))
    assert conflict.value.status == 409 and conflict.value.code == "request_in_progress"


def test_a_dead_owner_is_taken_over_after_its_lease(store, clock):
    idem = make(store, clock, lease_s=5)

    class Crash(BaseException):
        pass

    def crash():
        raise Crash()

    store_complete = store.complete
    store.complete = lambda *_: crash()  # the process dies before completing the record
    with pytest.raises(Crash):
        idem.run("k", "fp", lambda: Outcome(201, {"n": 1}))
    store.complete = store_complete
    clock.now += timedelta(seconds=6)
    assert idem.run("k", "fp", lambda: Outcome(201, {"n": 1}, replayed=True)).replayed


def test_an_expired_record_frees_the_key(store, clock):
    idem = make(store, clock, ttl_s=10)
    idem.run("k", "fp-old", lambda: Outcome(201, {"n": 1}))
    clock.now += timedelta(seconds=11)
    assert idem.run("k", "fp-new", lambda: Outcome(201, {"n": 2})).body == {"n": 2}


def test_concurrent_copies_run_once_and_all_see_the_same_outcome(store, clock):
    idem = make(store, clock, wait_s=5)
    calls, results = [], []
    gate = threading.Event()

    def action():
        gate.wait(1)
        calls.append(1)
        return Outcome(201, {"id": 42})

    threads = [threading.Thread(target=lambda: results.append(idem.run("k", "fp", action))) for _ in range(10)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {(r.status, r.body["id"]) for r in results} == {(201, 42)}
    assert sum(not r.replayed for r in results) == 1


@pytest.mark.parametrize("key", [None, "", "   ", "x" * 256, "caf\u00e9", "a\nb"])
def test_keys_are_required_and_bounded(key):
    with pytest.raises(InvalidRequest):
        validate_key(key)


def test_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint("topup", {"a": 1, "b": 2}) == fingerprint("topup", {"b": 2, "a": 1})
    assert fingerprint("topup", {"a": 1}) != fingerprint("usage", {"a": 1})
    assert fingerprint("topup", {"a": 1}) != fingerprint("topup", {"a": 2})


def test_a_record_that_vanishes_mid_request_is_completed_whole(store, clock):
    idem = make(store, clock)

    def action():
        store.records.clear()  # e.g. deleted by its TTL while the action ran
        return Outcome(201, {"n": 1})

    idem.run("k", "fp", action)
    replay = idem.run("k", "fp", lambda: Outcome(201, {"n": 2}))
    assert replay.replayed and replay.body == {"n": 1}
