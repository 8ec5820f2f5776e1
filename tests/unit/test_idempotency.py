"""The idempotency protocol over an in-memory record store (no Firestore)."""

import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import DependencyUnavailable, InProgress, InvalidRequest, Refused
from common.idempotency import Idempotency, Outcome, fingerprint, validate_key


class MemoryStore:
    def __init__(self):
        self.records = {}
        self.writes = 0
        self.lock = threading.Lock()

    def create(self, doc_id, record):
        with self.lock:
            if doc_id in self.records:
                return False
            self.records[doc_id] = dict(record)
            self.writes += 1
            return True

    def get(self, doc_id):
        with self.lock:
            record = self.records.get(doc_id)
            return dict(record) if record else None

    def complete(self, doc_id, fields):
        with self.lock:
            self.records.setdefault(doc_id, {}).update(fields)  # a merge, as in Firestore
            self.writes += 1

    def release(self, doc_id):
        with self.lock:
            self.records.pop(doc_id, None)


class MemoryLedger:
    """Postgres' part: one posting per key, for good; a repeat of the key replays it."""

    def __init__(self):
        self.posted = {}
        self.calls = 0

    def action(self, key, body):
        def post():
            self.calls += 1
            if key in self.posted:
                return Outcome(201, self.posted[key], replayed=True)
            self.posted[key] = body
            return Outcome(201, body)

        return post

    def committed(self, key):
        return lambda: Outcome(201, self.posted[key], replayed=True) if key in self.posted else None


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 24, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def ledger():
    return MemoryLedger()


@pytest.fixture
def clock():
    return Clock()


def make(store, clock, **overrides):
    settings = {"ttl_s": 3600, "wait_s": 0.5, "lease_s": 30, "clock": clock, **overrides}
    return Idempotency(store, **settings)


def claimed_by_a_live_owner(store, clock, key=b"k"):
    """A claim on `key` whose owner is still within its lease and has posted nothing."""
    store.create(
        hashlib.sha256(key).hexdigest(),
        {
            "state": "in_progress",
            "fingerprint": "fp",
            "lease_until": clock.now + timedelta(seconds=30),
            "expire_at": clock.now + timedelta(hours=1),
        },
    )


def failing(error):
    def action():
        raise error

    return action


def test_first_request_runs_and_a_repeat_replays_without_running(store, ledger, clock):
    idem = make(store, clock)
    first = idem.run("k", "fp", ledger.action("k", {"n": 1}), ledger.committed("k"))
    again = idem.run("k", "fp", ledger.action("k", {"n": 2}), ledger.committed("k"))
    assert (first.status, first.body, first.replayed) == (201, {"n": 1}, False)
    assert (again.status, again.body, again.replayed) == (201, {"n": 1}, True)
    assert ledger.calls == 1


def test_a_successful_request_writes_its_record_once(store, ledger, clock):
    """The claim is the only write: the outcome is the posting, kept by the ledger."""
    idem = make(store, clock)
    idem.run("k", "fp", ledger.action("k", {"n": 1}), ledger.committed("k"))
    assert store.writes == 1


def test_same_key_different_request_is_refused(store, ledger, clock):
    idem = make(store, clock)
    idem.run("k", "fp-1", ledger.action("k", {}), ledger.committed("k"))
    with pytest.raises(Refused) as refused:
        idem.run("k", "fp-2", ledger.action("k", {}), ledger.committed("k"))
    assert refused.value.code == "idempotency_key_reused"
    assert ledger.calls == 1


def test_business_refusals_are_sticky(store, ledger, clock):
    idem = make(store, clock)
    with pytest.raises(Refused):
        idem.run("k", "fp", failing(Refused("no", code="insufficient_funds")), ledger.committed("k"))
    replay = idem.run("k", "fp", ledger.action("k", {"surprise": True}), ledger.committed("k"))
    assert replay.status == 422 and replay.body["error"]["code"] == "insufficient_funds" and replay.replayed
    assert ledger.calls == 0


@pytest.mark.parametrize("error", [DependencyUnavailable("down"), InvalidRequest("bad"), RuntimeError("bug")])
def test_failures_that_say_nothing_about_the_request_release_the_key(store, ledger, clock, error):
    idem = make(store, clock)
    with pytest.raises(type(error)):
        idem.run("k", "fp", failing(error), ledger.committed("k"))
    assert store.records == {}
    assert idem.run("k", "fp", ledger.action("k", {"ok": True}), ledger.committed("k")).body == {"ok": True}


def test_a_claim_with_nothing_posted_past_the_wait_is_a_conflict(store, ledger, clock):
    idem = make(store, clock, wait_s=0.05)
    claimed_by_a_live_owner(store, clock)
    with pytest.raises(InProgress) as conflict:
        idem.run("k", "fp", ledger.action("k", {}), ledger.committed("k"))
    assert conflict.value.status == 409 and conflict.value.code == "request_in_progress"
    assert ledger.calls == 0


class Crash(BaseException):
    """Not an Exception: like a killed process, nothing in the request path handles it."""


def crashing_process(store):
    """A store whose owner dies mid-request: it never gets to release its claim."""

    def dead(*_):
        raise Crash()

    store.release = dead
    return store


def test_a_copy_after_an_owner_died_past_its_commit_replays_at_once(store, ledger, clock):
    idem = make(crashing_process(store), clock, lease_s=30)
    post = ledger.action("k", {"n": 1})

    def post_then_die():
        post()
        raise Crash()

    with pytest.raises(Crash):
        idem.run("k", "fp", post_then_die, ledger.committed("k"))
    again = idem.run("k", "fp", ledger.action("k", {"n": 2}), ledger.committed("k"))  # within the lease
    assert again.replayed and again.body == {"n": 1}
    assert ledger.posted == {"k": {"n": 1}}


def test_an_owner_that_died_before_posting_is_taken_over_after_its_lease(store, ledger, clock):
    idem = make(crashing_process(store), clock, lease_s=5, wait_s=0.05)
    with pytest.raises(Crash):
        idem.run("k", "fp", failing(Crash()), ledger.committed("k"))
    with pytest.raises(InProgress):  # the lease still runs: the owner may be alive
        idem.run("k", "fp", ledger.action("k", {"n": 1}), ledger.committed("k"))
    clock.now += timedelta(seconds=6)
    taken_over = idem.run("k", "fp", ledger.action("k", {"n": 1}), ledger.committed("k"))
    assert taken_over.body == {"n": 1} and not taken_over.replayed
    assert ledger.calls == 1


def test_an_expired_record_frees_the_key(store, ledger, clock):
    idem = make(store, clock, ttl_s=10)
    with pytest.raises(Refused):  # a stored refusal: the record alone holds it
        idem.run("k", "fp-old", failing(Refused("no", code="insufficient_funds")), ledger.committed("k"))
    clock.now += timedelta(seconds=11)
    assert idem.run("k", "fp-new", ledger.action("k", {"n": 2}), ledger.committed("k")).body == {"n": 2}


def test_concurrent_copies_run_once_and_all_see_the_same_outcome(store, ledger, clock):
    idem = make(store, clock, wait_s=5)
    results = []
    gate = threading.Event()
    post = ledger.action("k", {"id": 42})

    def action():
        gate.wait(1)
        return post()

    threads = [
        threading.Thread(target=lambda: results.append(idem.run("k", "fp", action, ledger.committed("k"))))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert ledger.calls == 1
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


def test_a_record_that_vanishes_mid_request_still_posts_once(store, ledger, clock):
    idem = make(store, clock)
    post = ledger.action("k", {"n": 1})

    def action():
        store.records.clear()  # e.g. deleted by its TTL while the action ran
        return post()

    idem.run("k", "fp", action, ledger.committed("k"))
    replay = idem.run("k", "fp", ledger.action("k", {"n": 2}), ledger.committed("k"))
    assert replay.replayed and replay.body == {"n": 1}
    assert ledger.posted == {"k": {"n": 1}}


def test_a_posting_under_the_key_wins_over_a_stored_refusal(store, ledger, clock):
    """A slow owner's refusal can land after another copy posted: the posting is the truth."""
    idem = make(store, clock)
    with pytest.raises(Refused):
        idem.run("k", "fp", failing(Refused("no", code="insufficient_funds")), ledger.committed("k"))
    ledger.posted["k"] = {"n": 1}  # posted by a copy that took over meanwhile
    replay = idem.run("k", "fp", ledger.action("k", {"n": 2}), ledger.committed("k"))
    assert (replay.status, replay.body, replay.replayed) == (201, {"n": 1}, True)


def test_a_waiting_copy_asks_the_ledger_only_now_and_then(store, ledger, clock):
    idem = make(store, clock, wait_s=0.6)
    claimed_by_a_live_owner(store, clock)
    asked = []

    def committed():
        asked.append(1)
        return None

    with pytest.raises(InProgress):
        idem.run("k", "fp", ledger.action("k", {}), committed)
    assert 2 <= len(asked) <= 4  # at once, then every 0.25 s: not on every poll of the record


class LostAnswerStore(MemoryStore):
    """The first create takes effect but its answer is lost; the retried call then finds
    the record (Firestore answers ALREADY_EXISTS), as after a connection reset."""

    def __init__(self):
        super().__init__()
        self.lost = False

    def create(self, doc_id, record):
        created = super().create(doc_id, record)
        if created and not self.lost:
            self.lost = True
            return False
        return created


def test_a_claim_whose_create_answer_was_lost_is_still_ours(ledger, clock):
    store = LostAnswerStore()
    outcome = make(store, clock, wait_s=0.1).run("k", "fp", ledger.action("k", {"id": 1}), ledger.committed("k"))
    # not a 409 request_in_progress for a claim that is its own, and posted once
    assert outcome == Outcome(201, {"id": 1}) and ledger.calls == 1
