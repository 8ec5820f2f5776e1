"""The idempotency protocol over an in-memory record store (no Firestore)."""

import hashlib
import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import DependencyUnavailable, InProgress, InvalidRequest, Refused
from common.idempotency import Idempotency, Outcome, Stored, fingerprint, validate_key


class MemoryStore:
    """Firestore's semantics in a dict: every write gives the record a new version (a
    counter shared by all records, as update times are never reused, so a record
    deleted and created again never comes back at a version seen before), and every
    write after the create applies only at the version the writer names."""

    def __init__(self):
        self.records = {}
        self.versions = {}
        self.writes = 0
        self.lock = threading.Lock()
        self._clock = itertools.count(1)

    def _written(self, doc_id, record):
        self.records[doc_id] = record
        self.versions[doc_id] = next(self._clock)
        self.writes += 1
        return self.versions[doc_id]

    def create(self, doc_id, record):
        with self.lock:
            if doc_id in self.records:
                return None
            return self._written(doc_id, dict(record))

    def get(self, doc_id):
        with self.lock:
            if doc_id not in self.records:
                return None
            return Stored(dict(self.records[doc_id]), self.versions[doc_id])

    def takeover(self, doc_id, record, expected):
        with self.lock:
            if self.versions.get(doc_id) != expected:
                return None
            return self._written(doc_id, {**self.records[doc_id], **record})  # an update, as in Firestore

    def complete(self, doc_id, fields, expected):
        with self.lock:
            if self.versions.get(doc_id) != expected:
                return False
            self._written(doc_id, {**self.records[doc_id], **fields})
            return True

    def release(self, doc_id, expected):
        with self.lock:
            if self.versions.get(doc_id) != expected:
                return False
            del self.records[doc_id], self.versions[doc_id]
            return True


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
        if created is not None and not self.lost:
            self.lost = True
            return None
        return created


def test_a_claim_whose_create_answer_was_lost_is_still_ours(ledger, clock):
    store = LostAnswerStore()
    outcome = make(store, clock, wait_s=0.1).run("k", "fp", ledger.action("k", {"id": 1}), ledger.committed("k"))
    # not a 409 request_in_progress for a claim that is its own, and posted once
    assert outcome == Outcome(201, {"id": 1}) and ledger.calls == 1


# Races between copies of one request, played out in one thread: `Interleaved` lets
# another copy run its whole request between this copy's read of a record and its
# conditional write, the moment where an unconditional write would do harm.

DOC = hashlib.sha256(b"k").hexdigest()  # record_id("", "k")


class Interleaved(MemoryStore):
    """Runs `meanwhile` once, just before the first call of `method` goes through."""

    def __init__(self, method):
        super().__init__()
        self.method = method
        self.meanwhile = None

    def _before(self, method):
        if method == self.method and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()

    def takeover(self, *args):
        self._before("takeover")
        return super().takeover(*args)

    def release(self, *args):
        self._before("release")
        return super().release(*args)


def counted(ledger, runs, who, body):
    post = ledger.action("k", body)

    def action():
        runs.append(who)
        return post()

    return action


def test_of_two_followers_after_a_lease_ran_out_only_one_takes_over_and_runs(ledger, clock):
    store = Interleaved("takeover")
    idem = make(store, clock, wait_s=5)
    claimed_by_a_live_owner(store, clock)
    clock.now += timedelta(seconds=31)  # its owner died before posting: the lease ran out
    runs, other = [], []
    # Both followers read the dead owner's record; the other one writes first.
    store.meanwhile = lambda: other.append(
        idem.run("k", "fp", counted(ledger, runs, "other", {"by": "other"}), ledger.committed("k"))
    )
    outcome = idem.run("k", "fp", counted(ledger, runs, "this", {"by": "this"}), ledger.committed("k"))
    assert runs == ["other"]
    assert other[0] == Outcome(201, {"by": "other"})
    assert outcome == Outcome(201, {"by": "other"}, replayed=True)  # the loser followed the winner


def test_an_expired_record_that_a_faster_caller_replaced_is_not_deleted(ledger, clock):
    store = Interleaved("release")
    idem = make(store, clock, ttl_s=10, wait_s=5)
    with pytest.raises(Refused):  # a stored refusal: the record holds the key until it expires
        idem.run("k", "fp", failing(Refused("no", code="insufficient_funds")), ledger.committed("k"))
    clock.now += timedelta(seconds=11)
    runs, faster = [], []
    # Both read the expired record; the faster one deletes it and claims the key afresh.
    store.meanwhile = lambda: faster.append(
        idem.run("k", "fp", counted(ledger, runs, "faster", {"by": "faster"}), ledger.committed("k"))
    )
    outcome = idem.run("k", "fp", counted(ledger, runs, "slower", {"by": "slower"}), ledger.committed("k"))
    assert runs == ["faster"]
    assert store.get(DOC).record["state"] == "in_progress"  # the faster caller's claim still stands
    assert outcome == Outcome(201, {"by": "faster"}, replayed=True)


class FirestoreFailsOnSecondWrites(MemoryStore):
    def complete(self, doc_id, fields, expected):
        raise DependencyUnavailable("the idempotency store is unreachable")


def test_a_refusal_that_cannot_be_kept_is_a_503_and_frees_the_key(ledger, clock):
    store = FirestoreFailsOnSecondWrites()
    idem = make(store, clock)
    with pytest.raises(DependencyUnavailable) as failed:
        idem.run("k", "fp", failing(Refused("no", code="insufficient_funds")), ledger.committed("k"))
    assert failed.value.status == 503 and failed.value.details == {"service": "firestore"}
    assert store.records == {}
    # The caller never heard "refused", so a retry with the key may run and succeed.
    assert idem.run("k", "fp", ledger.action("k", {"n": 1}), ledger.committed("k")) == Outcome(201, {"n": 1})


def stalls_past_its_lease_then(error, idem, clock, ledger, store, claims):
    """An owner that stalls past its lease while a retry takes the record over and posts,
    and then fails with `error`."""

    def action():
        clock.now += timedelta(seconds=6)
        post = ledger.action("k", {"n": 1})

        def takeover_action():
            claims.append(store.get(DOC).record["claim"])
            return post()

        assert idem.run("k", "fp", takeover_action, ledger.committed("k")) == Outcome(201, {"n": 1})
        raise error

    return action


def test_a_slow_owners_refusal_does_not_overwrite_the_claim_that_took_over(store, ledger, clock):
    idem = make(store, clock, lease_s=5)
    claims = []
    refusal = Refused("no", code="insufficient_funds")
    with pytest.raises(DependencyUnavailable):  # not the refusal: it could not be kept
        idem.run(
            "k", "fp", stalls_past_its_lease_then(refusal, idem, clock, ledger, store, claims), ledger.committed("k")
        )
    record = store.get(DOC).record
    assert record["state"] == "in_progress" and record["claim"] == claims[0] and "status" not in record
    assert idem.run("k", "fp", ledger.action("k", {"n": 2}), ledger.committed("k")) == Outcome(
        201, {"n": 1}, replayed=True
    )


@pytest.mark.parametrize("error", [DependencyUnavailable("down"), InvalidRequest("bad"), RuntimeError("bug")])
def test_a_slow_owners_failure_does_not_release_the_claim_that_took_over(store, ledger, clock, error):
    idem = make(store, clock, lease_s=5)
    claims = []
    with pytest.raises(type(error)):
        idem.run(
            "k", "fp", stalls_past_its_lease_then(error, idem, clock, ledger, store, claims), ledger.committed("k")
        )
    assert store.get(DOC).record["claim"] == claims[0]


class LostTakeoverAnswer(MemoryStore):
    """The first takeover takes effect but its answer is lost (the retried write then
    meets its own new version and reports a loss)."""

    def __init__(self):
        super().__init__()
        self.lost = False

    def takeover(self, doc_id, record, expected):
        version = super().takeover(doc_id, record, expected)
        if version is not None and not self.lost:
            self.lost = True
            return None
        return version


def test_a_takeover_whose_answer_was_lost_is_still_ours(ledger, clock):
    store = LostTakeoverAnswer()
    idem = make(store, clock, wait_s=0.1)
    claimed_by_a_live_owner(store, clock)
    clock.now += timedelta(seconds=31)
    assert idem.run("k", "fp", ledger.action("k", {"id": 1}), ledger.committed("k")) == Outcome(201, {"id": 1})
    assert store.lost and ledger.calls == 1
