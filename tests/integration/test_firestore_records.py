"""The idempotency records' store (google-cloud-firestore) against the real emulator:
create-if-absent even under a race, every later write conditional on the version read
(a stale one loses, the current one wins), `expire_at` kept as a Firestore timestamp
(the TTL policy in infra/terraform needs one), and an unreachable Firestore ending as a
503, never as a hang, a 500 or a lost race."""

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.config import get_settings
from common.errors import DependencyUnavailable
from common.idempotency import Idempotency, Outcome, record_id

COLLECTION = "record_store_checks"


@pytest.fixture
def store(stack):
    return FirestoreRecordStore(bootstrap.firestore_client(), COLLECTION, get_settings().firestore_timeout_s)


def new_id():
    return uuid.uuid4().hex


def at_once(count, call):
    """`call(n)` from `count` threads released together; their results in thread order."""
    results = [None] * count
    start = threading.Barrier(count)

    def run(n):
        start.wait()
        results[n] = call(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_is_create_if_absent_and_gives_the_records_version(store):
    doc = new_id()
    version = store.create(doc, {"state": "first"})
    assert isinstance(version, datetime)
    assert store.create(doc, {"state": "second"}) is None
    stored = store.get(doc)
    assert stored.record == {"state": "first"} and stored.version == version


def test_get_of_a_missing_record_is_none_and_releasing_one_is_a_lost_release(store):
    doc, other = new_id(), new_id()
    version = store.create(other, {"state": "x"})
    assert store.get(doc) is None
    assert store.release(doc, version) is False
    assert store.get(doc) is None


def test_a_stale_update_time_is_refused_by_the_emulator_as_failed_precondition(store):
    """What the adapter counts as a lost race (CHANGED_OR_GONE), from the client itself."""
    client = bootstrap.firestore_client()
    document = client.collection(COLLECTION).document(new_id())
    read = document.create({"n": 1}).update_time
    document.update({"n": 2})
    with pytest.raises(gexc.FailedPrecondition):
        document.update({"n": 3}, option=client.write_option(last_update_time=read))
    with pytest.raises(gexc.FailedPrecondition):
        client.collection(COLLECTION).document(new_id()).delete(option=client.write_option(last_update_time=read))


def test_a_takeover_wins_at_the_current_version_only(store):
    doc = new_id()
    first = store.create(doc, {"claim": "dead", "lease_until": 1})
    second = store.takeover(doc, {"claim": "new", "lease_until": 2}, first)
    assert second is not None and second != first
    assert store.get(doc).record == {"claim": "new", "lease_until": 2} and store.get(doc).version == second
    assert store.takeover(doc, {"claim": "late", "lease_until": 3}, first) is None  # read before the takeover
    assert store.get(doc).record == {"claim": "new", "lease_until": 2}
    assert store.takeover(new_id(), {"claim": "x"}, first) is None  # a record that is gone


def test_complete_adds_its_fields_at_the_current_version_only(store):
    doc = new_id()
    first = store.create(doc, {"state": "in_progress", "claim": "a"})
    taken = store.takeover(doc, {"claim": "b"}, first)
    assert store.complete(doc, {"state": "completed", "status": 422}, first) is False
    assert store.get(doc).record == {"state": "in_progress", "claim": "b"}
    assert store.complete(doc, {"state": "completed", "status": 422}, taken) is True
    assert store.get(doc).record == {"state": "completed", "claim": "b", "status": 422}
    missing = new_id()
    assert store.complete(missing, {"state": "completed"}, taken) is False
    assert store.get(missing) is None  # completing never creates a record


def test_release_deletes_at_the_current_version_only(store):
    doc = new_id()
    expired = store.create(doc, {"claim": "old"})
    assert store.release(doc, expired)
    recreated = store.create(doc, {"claim": "faster"})
    assert store.release(doc, expired) is False  # the record read before was already replaced
    assert store.get(doc).record == {"claim": "faster"}
    assert store.release(doc, recreated) is True
    assert store.get(doc) is None


def test_expire_at_is_kept_as_a_firestore_timestamp(store):
    doc, expire_at = new_id(), datetime.now(UTC).replace(microsecond=123000) + timedelta(days=1)
    store.create(doc, {"key": "k", "expire_at": expire_at})
    read = store.get(doc).record
    assert isinstance(read["expire_at"], datetime) and read["expire_at"] == expire_at


def test_sixteen_concurrent_creates_of_one_record_succeed_exactly_once(store):
    doc = new_id()
    results = at_once(16, lambda n: store.create(doc, {"owner": n}))
    winners = [n for n, version in enumerate(results) if version is not None]
    assert len(winners) == 1
    assert store.get(doc).record == {"owner": winners[0]}


def test_sixteen_concurrent_takeovers_of_one_version_succeed_exactly_once(store):
    doc = new_id()
    read = store.create(doc, {"owner": "dead"})
    results = at_once(16, lambda n: store.takeover(doc, {"owner": n}, read))
    winners = [n for n, version in enumerate(results) if version is not None]
    assert len(winners) == 1
    assert store.get(doc).record == {"owner": winners[0]}


class TakeoversTogether(FirestoreRecordStore):
    """Holds each follower's takeover until all of them have read the dead owner's
    record and want to write: the race a takeover must survive, every time."""

    def __init__(self, followers):
        super().__init__(bootstrap.firestore_client(), COLLECTION, get_settings().firestore_timeout_s)
        self._all_have_read = threading.Barrier(followers, timeout=60)

    def takeover(self, doc_id, record, expected):
        self._all_have_read.wait()
        return super().takeover(doc_id, record, expected)


def test_followers_racing_for_an_expired_lease_run_the_action_once(stack):
    """Eight copies of a request find its owner dead (lease over, nothing posted) at
    once: one takes the record over and runs; the others follow it to its posting."""
    followers, store = 8, TakeoversTogether(8)
    key, now, lock, runs, posted = new_id(), datetime.now(UTC), threading.Lock(), [], {}
    store.create(
        record_id("", key),
        {
            "state": "in_progress",
            "claim": "dead",
            "fingerprint": "fp",
            "lease_until": now - timedelta(seconds=1),
            "expire_at": now + timedelta(hours=1),
        },
    )
    idempotency = Idempotency(store, ttl_s=3600, wait_s=30, lease_s=30)

    def action(n):
        def post():
            with lock:
                runs.append(n)
                posted.setdefault(key, {"by": n})
                return Outcome(201, posted[key])

        return post

    def committed():
        with lock:
            return Outcome(201, posted[key], replayed=True) if key in posted else None

    outcomes = at_once(followers, lambda n: idempotency.run(key, "fp", action(n), committed))
    assert len(runs) == 1
    assert {(o.status, o.body["by"]) for o in outcomes} == {(201, runs[0])}
    assert sum(not o.replayed for o in outcomes) == 1


def unreachable_store(monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    return FirestoreRecordStore(firestore.Client(project=get_settings().gcp_project), COLLECTION, 0.5)


def test_an_unreachable_firestore_is_a_503_once_its_deadline_passes(stack, monkeypatch):
    with pytest.raises(DependencyUnavailable) as failed:
        unreachable_store(monkeypatch).get(new_id())
    assert failed.value.details == {"service": "firestore"}


def test_a_conditional_write_to_an_unreachable_firestore_is_a_503_not_a_lost_race(stack, monkeypatch):
    unreachable, version = unreachable_store(monkeypatch), datetime.now(UTC)
    for write in (
        lambda: unreachable.takeover(new_id(), {"claim": "x"}, version),
        lambda: unreachable.complete(new_id(), {"state": "completed"}, version),
        lambda: unreachable.release(new_id(), version),
    ):
        with pytest.raises(DependencyUnavailable):
            write()
