"""The idempotency records' store (google-cloud-firestore) against the real emulator:
create-if-absent even under a race, merges that create a missing record, `expire_at`
kept as a Firestore timestamp (the TTL policy in infra/terraform needs one), and an
unreachable Firestore ending as a 503, never as a hang or a 500."""

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.config import get_settings
from common.errors import DependencyUnavailable

COLLECTION = "record_store_checks"


@pytest.fixture
def store(stack):
    return FirestoreRecordStore(bootstrap.firestore_client(), COLLECTION, get_settings().firestore_timeout_s)


def new_id():
    return uuid.uuid4().hex


def test_create_is_create_if_absent(store):
    doc = new_id()
    assert store.create(doc, {"state": "first"}) is True
    assert store.create(doc, {"state": "second"}) is False
    assert store.get(doc) == {"state": "first"}


def test_get_of_a_missing_record_is_none_and_releasing_one_is_no_error(store):
    doc = new_id()
    assert store.get(doc) is None
    store.release(doc)
    assert store.get(doc) is None


def test_complete_merges_its_fields_and_creates_a_missing_record(store):
    doc = new_id()
    store.complete(doc, {"state": "completed"})
    assert store.get(doc) == {"state": "completed"}
    store.complete(doc, {"status": 422, "body": "{}"})
    assert store.get(doc) == {"state": "completed", "status": 422, "body": "{}"}


def test_expire_at_is_kept_as_a_firestore_timestamp(store):
    doc, expire_at = new_id(), datetime.now(UTC).replace(microsecond=123000) + timedelta(days=1)
    store.create(doc, {"key": "k", "expire_at": expire_at})
    read = store.get(doc)
    assert isinstance(read["expire_at"], datetime) and read["expire_at"] == expire_at


def test_sixteen_concurrent_creates_of_one_record_succeed_exactly_once(store):
    doc, results = new_id(), []
    start = threading.Barrier(16)

    def claim(n):
        start.wait()
        results.append((store.create(doc, {"owner": n}), n))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for created, n in results if created]
    assert len(results) == 16 and len(winners) == 1
    assert store.get(doc) == {"owner": winners[0]}


def test_an_unreachable_firestore_is_a_503_once_its_deadline_passes(stack, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
    unreachable = FirestoreRecordStore(firestore.Client(project=get_settings().gcp_project), COLLECTION, 0.5)
    with pytest.raises(DependencyUnavailable) as failed:
        unreachable.get(new_id())
    assert failed.value.details == {"service": "firestore"}
