"""bench/pricing.py's arithmetic against figures worked by hand, the deployed sizes
bench/cost.py reads from Terraform, and the Firestore operations it prices against
what the idempotency protocol really does."""

import pytest

from bench import pricing
from bench.pricing import Deployed, FirestoreOps
from tests.unit.test_idempotency import Clock, MemoryLedger, MemoryStore, make

HTTP = Deployed(vcpu=1.0, memory_gib=0.5, concurrency=8)


def test_memory_settings_in_gib():
    assert pricing.memory_gib("512Mi") == 0.5
    assert pricing.memory_gib("1Gi") == 1.0
    assert pricing.memory_gib("2G") == pytest.approx(2e9 / 2**30)
    with pytest.raises(ValueError):
        pricing.memory_gib("512")


def test_billed_time_is_latency_over_concurrency_but_never_less_than_the_cpu_used():
    # 40 ms shared by 8 requests: 5 ms each; 3 ms of CPU on 1 vCPU is less
    assert pricing.billed_seconds(0.040, 0.003, HTTP) == pytest.approx(0.005)
    # 16 ms shared by 8 is 2 ms, but the request kept the one vCPU busy 3 ms
    assert pricing.billed_seconds(0.016, 0.003, HTTP) == pytest.approx(0.003)
    # two vCPUs halve the CPU floor
    assert pricing.billed_seconds(0.0, 0.003, Deployed(2.0, 1.0, 8)) == pytest.approx(0.0015)


def test_compute_per_million_by_hand():
    # 5 ms x (1 vCPU x $0.000024 + 0.5 GiB x $0.0000025) = 5e-3 x 0.00002525 = $1.2625e-7
    # a request; x 1e6 = $0.12625, plus $0.40 of request fees
    assert pricing.compute_per_million(0.005, HTTP) == pytest.approx(0.52625)


def test_firestore_per_million_by_hand():
    # a write ($0.09 / 100k) and a delete ($0.01 / 100k): $0.10 per 100k actions = $1.00 a million
    assert pricing.firestore_per_million(FirestoreOps(writes=1, deletes=1)) == pytest.approx(1.00)
    # 2 writes and a delete: $0.19 per 100k = $1.90 a million
    assert pricing.firestore_per_million(FirestoreOps(writes=2, deletes=1)) == pytest.approx(1.90)
    # a replay: a read ($0.03) and a refused create ($0.09): $1.20 a million
    assert pricing.firestore_per_million(FirestoreOps(reads=1, writes=1)) == pytest.approx(1.20)


def test_pubsub_bills_each_request_at_least_1000_bytes():
    # a body of 100 bytes, attributes "a"="bc" (3 bytes), 20 of timestamp, a 16-character id
    assert pricing.pubsub_message_bytes(b"x" * 100, {"a": "bc"}) == 139
    # 2 requests of a 139-byte message each bill 1,000 bytes: 2e9 bytes a million actions,
    # 2e9 / 2**40 TiB x $40 = $0.072759...
    assert pricing.pubsub_per_million(139, 2) == pytest.approx(2e9 / 2**40 * 40)
    # a 1,500-byte message bills its size
    assert pricing.pubsub_per_million(1500, 1) == pytest.approx(1.5e9 / 2**40 * 40)


def test_per_million_actions_adds_its_parts():
    cost = pricing.per_million_actions(0.040, 0.003, HTTP, FirestoreOps(writes=1, deletes=1), 900)
    assert cost.compute == pytest.approx(0.52625)
    assert cost.firestore == pytest.approx(1.00)
    assert cost.pubsub == pytest.approx(2e9 / 2**40 * 40)
    assert cost.total == pytest.approx(0.52625 + 1.00 + 2e9 / 2**40 * 40)
    # no event (a read): no Pub/Sub
    assert pricing.per_million_actions(0.040, 0.003, HTTP, FirestoreOps(), 0).pubsub == 0.0


def test_the_deployed_sizes_are_terraforms():
    from bench.cost import deployed

    # functions.tf: HTTP functions 1 vCPU and 512Mi, pushed ones 1Gi; var.function_concurrency 8
    assert deployed("topup") == Deployed(vcpu=1.0, memory_gib=0.5, concurrency=8)
    assert deployed("actions") == Deployed(vcpu=1.0, memory_gib=1.0, concurrency=8)


class CountingStore(MemoryStore):
    """The protocol's calls to its store, as Firestore would bill them."""

    def __init__(self):
        super().__init__()
        self.ops = {"reads": 0, "writes": 0, "deletes": 0}

    def create(self, doc_id, record):
        self.ops["writes"] += 1
        return super().create(doc_id, record)

    def get(self, doc_id):
        self.ops["reads"] += 1
        return super().get(doc_id)

    def takeover(self, doc_id, record, expected):
        self.ops["writes"] += 1
        return super().takeover(doc_id, record, expected)

    def complete(self, doc_id, fields, expected):
        self.ops["writes"] += 1
        return super().complete(doc_id, fields, expected)

    def release(self, doc_id, expected):
        self.ops["deletes"] += 1
        return super().release(doc_id, expected)


def test_the_priced_firestore_operations_are_the_protocols():
    """What each kind of request does to its record, as priced; + 1 delete: the TTL
    policy's, a day later, for every record a request leaves."""
    from common.errors import Refused

    store, ledger = CountingStore(), MemoryLedger()
    idempotency = make(store, Clock())

    def counted(key, action):
        store.ops = {"reads": 0, "writes": 0, "deletes": 0}
        try:
            idempotency.run(key, "fp", action, ledger.committed(key))
        except Refused:
            pass
        return store.ops

    first = counted("k-1", ledger.action("k-1", {}))
    assert FirestoreOps(**{**first, "deletes": first["deletes"] + 1}) == pricing.IDEMPOTENCY_OPS["first"]
    assert FirestoreOps(**counted("k-1", ledger.action("k-1", {}))) == pricing.IDEMPOTENCY_OPS["replay"]

    def refused():
        raise Refused("not enough", code="insufficient_funds")

    refusal = counted("k-2", refused)
    assert FirestoreOps(**{**refusal, "deletes": refusal["deletes"] + 1}) == pricing.IDEMPOTENCY_OPS["refused"]
