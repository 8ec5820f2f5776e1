"""The REST Firestore client against the real emulator, with the official client
(google-cloud-firestore) as an independent reader and writer: the documents must be
the same whichever side wrote them. In particular `expire_at` must be a Firestore
timestamp, or the TTL policy in infra/terraform would never delete a record."""

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from common import bootstrap
from common.adapters.firestore_idempotency import FirestoreRecordStore
from common.adapters.firestore_rest import FirestoreDocuments, FirestoreError
from common.config import get_settings
from common.errors import DependencyUnavailable

COLLECTION = "rest_client_checks"


@pytest.fixture
def documents(stack):
    return bootstrap.firestore()


@pytest.fixture
def official(stack):
    return firestore.Client(project=get_settings().gcp_project).collection(COLLECTION)


def new_path():
    return f"{COLLECTION}/{uuid.uuid4().hex}"


def test_create_is_create_if_absent(documents):
    path = new_path()
    assert documents.create(path, {"state": "first"}) is True
    assert documents.create(path, {"state": "second"}) is False
    assert documents.get(path) == {"state": "first"}


def test_get_of_a_missing_document_is_none_and_delete_of_one_is_no_error(documents):
    path = new_path()
    assert documents.get(path) is None
    documents.delete(path)
    assert documents.get(path) is None


def test_merge_sets_only_its_fields_and_creates_a_missing_document(documents):
    path = new_path()
    documents.merge(path, {"state": "completed"})
    assert documents.get(path) == {"state": "completed"}
    documents.merge(path, {"status": 422, "body": "{}"})
    assert documents.get(path) == {"state": "completed", "status": 422, "body": "{}"}


def test_what_the_rest_client_writes_the_official_client_reads_with_its_types(documents, official):
    path = new_path()
    expire_at = datetime.now(UTC).replace(microsecond=123456) + timedelta(days=1)
    documents.create(path, {"key": "k", "status": 201, "expire_at": expire_at, "done": True, "ratio": 0.5})
    read = official.document(path.rpartition("/")[2]).get().to_dict()
    assert read == {"key": "k", "status": 201, "expire_at": expire_at, "done": True, "ratio": 0.5}
    assert isinstance(read["expire_at"], datetime) and isinstance(read["status"], int)


def test_what_the_official_client_writes_the_rest_client_reads(documents, official):
    path = new_path()
    at = datetime.now(UTC).replace(microsecond=654321)
    official.document(path.rpartition("/")[2]).set({"at": at, "n": 2**40, "tags": ["a", "b"], "m": {"x": None}})
    assert documents.get(path) == {"at": at, "n": 2**40, "tags": ["a", "b"], "m": {"x": None}}


def test_sixteen_concurrent_creates_of_one_document_succeed_exactly_once(documents):
    path, results = new_path(), []
    start = threading.Barrier(16)

    def claim(n):
        start.wait()
        results.append((documents.create(path, {"owner": n}), n))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for created, n in results if created]
    assert len(results) == 16 and len(winners) == 1
    assert documents.get(path) == {"owner": winners[0]}


def test_an_unreachable_firestore_is_a_firestore_error_once_its_retries_run_out(stack):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = FirestoreDocuments("p", "(default)", timeout_s=0.5, emulator_host=f"127.0.0.1:{port}")
    with pytest.raises(FirestoreError) as failed:
        unreachable.get("c/d")
    assert failed.value.status == 0 and failed.value.reason == "ConnectionRefusedError"


def test_a_response_cut_off_mid_body_is_a_503_not_a_crash(stack):
    """A connection that dies inside Firestore's answer (http.client's IncompleteRead,
    which is no OSError) must end as the store's DependencyUnavailable like any outage."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_half():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"na')

    threading.Thread(target=answer_half, daemon=True).start()
    try:
        cut_off = FirestoreDocuments("p", "(default)", timeout_s=0.5, emulator_host=f"127.0.0.1:{port}")
        store = FirestoreRecordStore(cut_off, "records")
        with pytest.raises(DependencyUnavailable) as failed:
            store.get("doc")
        assert failed.value.details == {"service": "firestore"}
        assert isinstance(failed.value.__cause__, FirestoreError)
    finally:
        listener.close()
